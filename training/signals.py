"""Stop signals: SIGTERM/SIGINT are recorded, never allowed to kill a step or a save midway.

RunPod sends SIGTERM and kills 5 s later; training.trainer.preemption turns the record into a checkpoint.
Kept free of heavy imports: train.py installs it before anything else.
"""

from __future__ import annotations

import logging
import signal

from training.outcome import Outcome

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
    """Records SIGTERM/SIGINT in the run's Outcome. Before training starts a signal aborts at once
    (raises Preempted); once training runs, it is only recorded and the callback stops at the next
    step end (or the evaluation in progress stops between batches and generated tokens)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, outcome: Outcome):
        self.outcome = outcome
        self.training = False
        self._previous = {}

    @property
    def requested(self) -> str | None:
        return self.outcome.signal

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
        self.outcome.stop_signal(signal.Signals(signum).name)
        if not self.training:
            raise Preempted(self.requested)
        if first:
            log.info("%s received: finishing this step, then saving a checkpoint", self.requested)
