"""How a run ends: the one record of why training stopped, set by whoever stopped it (a stop signal,
the budget cap, early stopping) and read once by train.py, which turns it into the exit code, the
status in run_status.json and the last line of the log.

Precedence when several happen: a stop signal (the pod is going away), then the budget cap (both
end with a checkpoint and no final/), then early stopping (a normal end, with final/).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from training.errors import EXIT_BUDGET, EXIT_OK, EXIT_PREEMPTED

ANOTHER_RANK = "SIGTERM on another rank"


class RunOutcome(enum.StrEnum):
    """The one vocabulary of how a run ended, shared by the trainer (run_status.json), the pod's
    supervisor and setup_pod.sh (the outcome line, training.outcome_line), the fleet's queue and its
    controller. A StrEnum: its members are the strings written to files, the database and logs."""

    FINISHED = "finished"  # ran to max_steps; final/ written
    EARLY_STOPPED = "early_stopped"  # stopped by early stopping; final/ written
    BUDGET_STOPPED = "budget_stopped"  # the experiment's own budget_cap; checkpoint saved
    PREEMPTED = "preempted"  # a stop signal (RunPod taking the pod back); checkpoint saved
    FAILED = "failed"  # any other exit: a crash, a bad config, a failed setup
    DEADMAN = "deadman"  # the pod's dead-man switch stopped it (the fleet counts it as a failure)
    UNKNOWN = "unknown"  # no outcome could be read (the fleet relaunches, which is safe, and counts nothing)


@dataclass(frozen=True)
class Ending:
    status: RunOutcome  # run_status.json's status
    exit_code: int
    writes_final: bool  # a normal end: final/ is written; a stop leaves its checkpoint to resume from

    def message(self, step: int, signal: str | None = None) -> str:
        if self.status is RunOutcome.PREEMPTED:
            return f"stopped by {signal} at step {step}: checkpoint saved; rerun with --resume auto to continue"
        if self.status is RunOutcome.BUDGET_STOPPED:
            return (f"stopped by budget_cap at step {step}: checkpoint saved; raise budget_cap and rerun with "
                    "--resume auto to continue")
        return f"done at step {step}" + (" (early stopping)" if self.status is RunOutcome.EARLY_STOPPED else "")


PREEMPTED = Ending(RunOutcome.PREEMPTED, EXIT_PREEMPTED, writes_final=False)
BUDGET_STOPPED = Ending(RunOutcome.BUDGET_STOPPED, EXIT_BUDGET, writes_final=False)
EARLY_STOPPED = Ending(RunOutcome.EARLY_STOPPED, EXIT_OK, writes_final=True)
FINISHED = Ending(RunOutcome.FINISHED, EXIT_OK, writes_final=True)


class Outcome:
    """Why training stopped so far; nothing set means it ran to max_steps."""

    def __init__(self):
        self.signal: str | None = None  # "SIGTERM", "SIGINT", or ANOTHER_RANK under torchrun
        self.budget_stopped = False
        self.early_stopped = False

    def stop_signal(self, name: str) -> None:
        self.signal = self.signal or name

    def stop_budget(self) -> None:
        self.budget_stopped = True

    def stop_early(self) -> None:
        self.early_stopped = True

    @property
    def stopping(self) -> bool:
        """Training must end after this step with a checkpoint (not a normal end)."""
        return self.signal is not None or self.budget_stopped

    def ending(self) -> Ending:
        if self.signal is not None:
            return PREEMPTED
        if self.budget_stopped:
            return BUDGET_STOPPED
        return EARLY_STOPPED if self.early_stopped else FINISHED
