"""Stop signals: SIGTERM/SIGINT are recorded, never allowed to kill a step or a save midway.

RunPod sends SIGTERM and kills 5 s later; training.preemption turns the record into a checkpoint.
Kept free of heavy imports: train.py installs it before anything else.
"""

from __future__ import annotations

import logging
import signal

log = logging.getLogger("training")


class Preempted(BaseException):
    """A stop signal arrived before training started: there is nothing to save yet.

    A BaseException, like KeyboardInterrupt: the broad `except Exception` of a guarded preflight
    check, a config loader or a library would otherwise turn a stop into "bad input" (exit 2)."""


class EvaluationStopped(BaseException):
    """A stop request cut an evaluation short (between batches or generated tokens): the trainer
    records nothing of it and saves at the step reached. A BaseException, so that no library's
    `except Exception` in between can swallow it."""


class StopSignals:
    """Records SIGTERM/SIGINT. Before training starts a signal aborts at once (raises Preempted);
    once training runs, it only sets `requested` and the callback stops at the next step end."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested: str | None = None
        self.training = False
        self._previous = {}

    def install(self) -> StopSignals:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, _frame) -> None:
        first = self.requested is None
        self.requested = signal.Signals(signum).name
        if not self.training:
            raise Preempted(self.requested)
        if first:
            log.info("%s received: finishing this step, then saving a checkpoint", self.requested)
