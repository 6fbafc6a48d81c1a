"""Stopping cleanly: SIGTERM/SIGINT end the current step, save a checkpoint and exit 143;
a time cadence saves every `save_every_minutes` so a SIGKILL loses at most that much.

RunPod sends SIGTERM and kills 5 s later, so nothing here waits for more than the step in flight.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

from training.signals import StopSignals


class StopOnSignalCallback(TrainerCallback):
    def __init__(self, signals: StopSignals):
        self.signals = signals

    def on_train_begin(self, args, state, control, **kwargs):
        self.signals.training = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.signals.requested:
            control.should_save = True
            control.should_training_stop = True
            # Evaluating would spend the grace period on something a resume redoes anyway.
            control.should_evaluate = False


class SaveEveryMinutesCallback(TrainerCallback):
    """Asks for a checkpoint when `minutes` have passed since the last one (0 = off)."""

    def __init__(self, minutes: float, clock=time.monotonic):
        self.seconds = minutes * 60
        self.clock = clock
        self.last_save = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.last_save = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds > 0 and self.clock() - self.last_save >= self.seconds:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        self.last_save = self.clock()
