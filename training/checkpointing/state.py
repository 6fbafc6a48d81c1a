"""The harness's own loop state, saved in every checkpoint beside the Trainer's.

The Trainer's files restore the weights, optimizer, scheduler, RNG and data position; this file
restores what the harness adds on top (best metric, early-stopping counter, money spent, the W&B
run to continue) and records where the checkpoint came from (git commit, config) so a resume can
refuse a checkpoint that no longer fits the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field

from training.timestamps import utc_now

HARNESS_STATE_FILE = "harness_state.json"
STATE_FORMAT = 1


@dataclass
class HarnessState:
    format: int = STATE_FORMAT
    step: int = 0
    # eval_loss of exactly these weights (evaluated at this step), else None: retention ranks by it.
    eval_loss: float | None = None
    best_eval_loss: float | None = None
    best_step: int | None = None
    # Early stopping: the eval_loss to beat by more than min_delta, and evaluations in a row that did not.
    early_stopping_reference: float | None = None
    evals_without_improvement: int = 0
    # Money and device time spent by every run of this experiment so far (across preemptions).
    cost_usd: float = 0.0
    device_hours: float = 0.0
    wandb_run_id: str | None = None
    git_commit: str | None = None
    git_branch: str | None = None
    git_dirty: bool | None = None
    config_fingerprint: str = ""
    config: dict = field(default_factory=dict)
    saved_at: str = ""

    def save(self, directory: str) -> None:
        self.saved_at = utc_now()
        with open(os.path.join(directory, HARNESS_STATE_FILE), "w", encoding="utf-8") as out:
            json.dump(dataclasses.asdict(self), out, indent=2, sort_keys=True)

    @classmethod
    def load(cls, directory: str) -> HarnessState:
        with open(os.path.join(directory, HARNESS_STATE_FILE), encoding="utf-8") as source:
            values = json.load(source)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def fingerprint(config_values: dict) -> str:
    """A short stable hash of a config, to tell at a glance whether two runs trained the same thing."""
    return hashlib.sha256(json.dumps(config_values, sort_keys=True).encode()).hexdigest()[:16]
