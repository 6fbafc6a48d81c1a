"""Resuming: which checkpoint to continue from, and what a config change since then means.

Both are pure decisions over already-read data; train.py does the reading and the logging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from training.checkpointing import checkpoints
from training.errors import UserError

# Fields that fix the adapter's shape or the weights it sits on: a checkpoint trained with other
# values cannot be loaded into this model.
SHAPE_FIELDS = ("model_name", "r", "lora_alpha", "lora_target_modules", "lora_modules_to_save",
                "finetune_vision_layers", "finetune_language_layers", "load_in_4bit")
# Fields that never matter to a resume: where the run writes and what it is called.
IGNORED_FIELDS = ("output_dir", "experiment_name")


@dataclass
class ResumeChoice:
    path: str | None  # None: start fresh
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint, why it was skipped)
    # (checkpoint, why) of the skipped ones that look complete but whose content is damaged: left in
    # place, retention would count them among the newest and could delete the good one resumed.
    damaged: list[tuple[str, str]] = field(default_factory=list)


def choose_checkpoint(request: str | None, output_dir: str) -> ResumeChoice:
    """`--resume auto`: the newest complete checkpoint in output_dir whose content matches its
    manifest (None if there is none); `--resume PATH`: that checkpoint, which must be complete and
    undamaged."""
    if request is None:
        return ResumeChoice(None)
    if request == "auto":
        complete, rejected = checkpoints.scan(output_dir)
        chosen, damaged = None, []
        for candidate in reversed(complete):  # read only until a good one is found: usually the newest
            problem = checkpoints.verify(candidate.path, content=True)
            if problem is None:
                chosen = candidate
                break
            damaged.append((candidate.path, problem))
        newer = [(p, why) for p, why in rejected if chosen is None or (checkpoints.step_of(p) or 0) > chosen.step]
        skipped = sorted(newer + damaged, key=lambda item: checkpoints.step_of(item[0]) or 0)
        return ResumeChoice(chosen.path if chosen else None, skipped, damaged)
    path = os.path.abspath(request)
    problem = checkpoints.verify(path, content=True)
    if problem:
        raise UserError(f"--resume {request}: {problem}; use --resume auto to take the newest complete "
                        "checkpoint, or another checkpoint-<step> directory")
    return ResumeChoice(path)


def abandoned_by_fork(resumed_step: int, steps: list[int]) -> list[int]:
    """The checkpoints a resume from `resumed_step` leaves behind: every newer one. They belong to
    the line being abandoned; left in place, `--resume auto` would continue it, and retention would
    keep them as "the newest" over the new line's."""
    return sorted(step for step in steps if step > resumed_step)


def config_changes(saved: dict, current: dict) -> tuple[list[str], list[str]]:
    """(refusals, warnings) for resuming a checkpoint trained with `saved` under `current`."""
    refusals, warnings = [], []
    for name in sorted(set(saved) | set(current)):
        if name in IGNORED_FIELDS or name not in saved or name not in current:
            continue
        before, after = saved[name], current[name]
        if before == after:
            continue
        change = f"{name} {before!r} -> {after!r}"
        if name in SHAPE_FIELDS:
            refusals.append(f"{change}: the checkpoint's adapter has another shape; resume with the "
                            f"original {name} or start a new experiment (another output_dir)")
        else:
            warnings.append(change)
    return refusals, warnings
