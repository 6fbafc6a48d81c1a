"""A run's line of checkpoints from its start to its end, as one object over output_dir: where it
starts (a fresh run refused over an old one; the checkpoint to resume; damaged ones and a fork's
abandoned line set aside), what is pruned after each save, final/, and the hand-off to the Hub.

train.py asks it in that order; the Trainer's save/load overrides (training.trainer.harness) write
the checkpoints themselves and call `prune` after each. The pure policies stay apart: which
checkpoint to resume and what a config change means (resume.py), which ones to keep (retention.py).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable

from configs.base import TrainingConfig
from training import distributed
from training.checkpointing import checkpoints
from training.checkpointing.retention import checkpoints_to_delete
from training.checkpointing.save import FINAL_DIR, save_final
from training.errors import UserError

log = logging.getLogger("training")


@dataclasses.dataclass
class Start:
    checkpoint: str | None  # None: a fresh run
    state: object  # training.checkpointing.state.HarnessState to continue with
    learning_rate_changed: bool  # learning_rate differs from the checkpoint's: rebase the schedule


class Lifecycle:
    """The checkpoints of the run writing to `output_dir`. `publish`: what a finished run hands its
    final/ to (training.hub.publish.after_run with the test-split scorer; None: nothing)."""

    def __init__(self, output_dir: str, publish: Callable[[], None] | None = None):
        self.output_dir = output_dir
        self._publish = publish

    # --- the start ------------------------------------------------------------------------------
    def refuse_to_start_over(self) -> None:
        """A fresh run must not mix into an earlier run's checkpoints, metrics and cost."""
        complete, _ = checkpoints.scan(self.output_dir)
        found = [os.path.basename(c.path) for c in complete[-1:]]
        if os.path.isdir(os.path.join(self.output_dir, FINAL_DIR)):
            found.append(f"{FINAL_DIR}/")
        if found:
            raise UserError(f"output_dir={self.output_dir!r} already holds a run ({', '.join(found)}): continue it "
                            "with --resume auto, or start another with --set output_dir=... (or delete it)")

    def start(self, config: TrainingConfig, resume: str | None, choice=None,
              git_facts: Callable[[], dict] = dict) -> Start:
        """Where the run starts, decided once on rank 0 (after what interrupted saves left is cleared)
        and shared with every rank. `choice`: an explicit --resume PATH already checked; `git_facts`:
        the branch and commit to record in the state (training.git_cli.git_state), asked on rank 0."""
        return distributed.decided_on_main(lambda: self._start(config, resume, choice, git_facts))

    def _start(self, config: TrainingConfig, resume: str | None, choice, git_facts: Callable[[], dict]) -> Start:
        from training.checkpointing.resume import choose_checkpoint, config_changes
        from training.checkpointing.state import HarnessState, fingerprint

        promoted, leftovers = checkpoints.clear_staging(self.output_dir)
        for name in promoted:
            log.info("promoted %s/%s: its save completed, the copy it replaced was already gone",
                     checkpoints.STAGING_DIR, name)
        if leftovers:
            log.info("removed what interrupted saves left: %s", ", ".join(leftovers))
        choice = choice or choose_checkpoint(resume, self.output_dir)
        for path, why in choice.skipped:
            log.warning("skipping %s: %s", path, why)
        if choice.damaged:
            names = [os.path.basename(path) for path, _ in choice.damaged]
            aside = checkpoints.set_aside(self.output_dir, names, f"damaged-{_now()}")
            log.warning("moved the damaged %s aside (kept, not deleted): %s", ", ".join(names), aside)
        current = dataclasses.asdict(config)
        if choice.path is None:
            if resume == "auto":
                log.info("no complete checkpoint in %s: starting fresh", self.output_dir)
            state = HarnessState()
        else:
            state = HarnessState.load(choice.path)
            refusals, warnings = config_changes(state.config, current)
            if refusals:
                raise UserError(*[f"--resume {choice.path}: {r}" for r in refusals])
            for change in warnings:
                log.warning("config changed since the checkpoint: %s", change)
            if resume != "auto":
                self.set_aside_abandoned_line(state.step)
            log.info("resuming from %s (step %d)", choice.path, state.step)
        learning_rate_changed = choice.path is not None and state.config.get("learning_rate") != config.learning_rate
        state.config, state.config_fingerprint = current, fingerprint(current)
        for key, value in git_facts().items():
            setattr(state, key, value)
        return Start(choice.path, state, learning_rate_changed)

    def set_aside_abandoned_line(self, step: int) -> None:
        """A fork (`--resume PATH` to an older checkpoint): the old line's newer checkpoints and its
        final/ go to output_dir/abandoned/, kept but out of reach of `--resume auto` and retention."""
        from training.checkpointing.resume import abandoned_by_fork

        complete, rejected = checkpoints.scan(self.output_dir)
        steps = abandoned_by_fork(step, [c.step for c in complete] + [checkpoints.step_of(p) for p, _ in rejected])
        names = [checkpoints.checkpoint_name(s) for s in steps]
        if names and os.path.isdir(os.path.join(self.output_dir, FINAL_DIR)):
            names.append(FINAL_DIR)
        if names:
            aside = checkpoints.set_aside(self.output_dir, names, f"after-step-{step}-{_now()}")
            log.info("forking at step %d: the abandoned line moved aside (kept, not deleted): %s -> %s",
                     step, ", ".join(names), aside)

    # --- while training -------------------------------------------------------------------------
    def prune(self, keep_best: int, keep_recent: int) -> None:
        """After each save: only the best and the most recent complete checkpoints stay."""
        complete, _ = checkpoints.scan(self.output_dir)
        for doomed in checkpoints_to_delete(complete, keep_best, keep_recent):
            checkpoints.delete(doomed.path)
            log.info("retention: removed %s", os.path.basename(doomed.path))

    # --- the end --------------------------------------------------------------------------------
    def save_final(self, model, processor, add_files: Callable[[str], None]) -> str:
        """final/: the adapter, the processor and what add_files writes beside them (the config)."""
        return save_final(model, processor, self.output_dir, add_files)

    def publish(self) -> None:
        """A finished run's final/ handed on (push_to_hub); never raises (after_run's promise)."""
        if self._publish is not None:
            self._publish()


def _now() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
