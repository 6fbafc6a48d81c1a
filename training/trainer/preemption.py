"""Stopping and saving at step ends: SIGTERM/SIGINT or the budget cap end the run after the
current step with a checkpoint; a time cadence saves every `save_every_minutes` so a SIGKILL
loses at most that much. Under torchrun every rank takes the same decision at the same step:
a stop asked on one rank stops them all, with one coordinated checkpoint.

RunPod sends SIGTERM and kills 5 s later, so nothing here waits for more than the step in flight.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

from training import distributed
from training.outcome import ANOTHER_RANK
from training.signals import StopSignals


class StopAndSaveCallback(TrainerCallback):
    """Must come after the callbacks whose decisions it applies (the budget's, in the Outcome)."""

    def __init__(self, signals: StopSignals, save_every_minutes: float, clock=time.monotonic):
        self.signals, self.outcome = signals, signals.outcome
        self.seconds = save_every_minutes * 60
        self.clock = clock
        self.last_save = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.signals.training = True
        self.last_save = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        due = self.seconds > 0 and self.clock() - self.last_save >= self.seconds
        outcome = self.outcome
        signalled, over_budget, due = distributed.any_rank([outcome.signal is not None, outcome.budget_stopped, due])
        if signalled:
            outcome.stop_signal(ANOTHER_RANK)  # kept as it is where this rank got the signal itself
        if over_budget:
            outcome.stop_budget()  # rank 0 decides it; every rank stops with it
        if outcome.stopping:
            control.should_save = True
            control.should_training_stop = True
            # Evaluating would spend the grace period on something a resume redoes anyway.
            control.should_evaluate = False
        elif due:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        self.last_save = self.clock()
