"""How a run ends: the one record of why training stopped, set by whoever stopped it (a stop signal,
the budget cap, early stopping) and read once by train.py, which turns it into the exit code, the
status in run_status.json and the last line of the log.

Precedence when several happen: a stop signal (the pod is going away), then the budget cap (both
end with a checkpoint and no final/), then early stopping (a normal end, with final/).
"""

from __future__ import annotations

from dataclasses import dataclass

from training.errors import EXIT_BUDGET, EXIT_OK, EXIT_PREEMPTED

ANOTHER_RANK = "SIGTERM on another rank"


@dataclass(frozen=True)
class Ending:
    status: str  # run_status.json's: finished, early_stopped, preempted, budget_stopped
    exit_code: int
    writes_final: bool  # a normal end: final/ is written; a stop leaves its checkpoint to resume from

    def message(self, step: int, signal: str | None = None) -> str:
        if self.status == "preempted":
            return f"stopped by {signal} at step {step}: checkpoint saved; rerun with --resume auto to continue"
        if self.status == "budget_stopped":
            return (f"stopped by budget_cap at step {step}: checkpoint saved; raise budget_cap and rerun with "
                    "--resume auto to continue")
        return f"done at step {step}" + (" (early stopping)" if self.status == "early_stopped" else "")


PREEMPTED = Ending("preempted", EXIT_PREEMPTED, writes_final=False)
BUDGET_STOPPED = Ending("budget_stopped", EXIT_BUDGET, writes_final=False)
EARLY_STOPPED = Ending("early_stopped", EXIT_OK, writes_final=True)
FINISHED = Ending("finished", EXIT_OK, writes_final=True)


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
