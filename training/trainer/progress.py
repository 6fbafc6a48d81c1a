"""Console progress: one plain line per logged step, readable in a pod's log file."""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback

log = logging.getLogger("training")

SHOWN = ("loss", "eval_loss", "eval_cer", "eval_wer", "eval_exact_match", "learning_rate", "grad_norm", "cost_usd")


class ThroughputMeter:
    """Training samples per second between two log events, and the GPU's peak memory."""

    def __init__(self, samples_per_step: int, clock=time.monotonic):
        self.samples_per_step, self.clock = samples_per_step, clock
        self.last: tuple[int, float] | None = None

    def metrics(self, step: int) -> dict[str, float]:
        now = self.clock()
        out: dict[str, float] = {}
        if self.last is not None and step > self.last[0] and now > self.last[1]:
            out["samples_per_second"] = round((step - self.last[0]) * self.samples_per_step / (now - self.last[1]), 3)
        self.last = (step, now)
        peak = peak_gpu_memory_gb()
        if peak is not None:
            out["gpu_peak_memory_gb"] = peak
        return out


def peak_gpu_memory_gb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 1e9, 3)


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class ProgressCallback(TrainerCallback):
    def __init__(self):
        self.started = None
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.monotonic(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or self.started is None:
            return
        if "loss" not in logs and "eval_loss" not in logs:
            return  # the Trainer's end-of-training summary: train.py reports the end itself
        shown = "  ".join(f"{k} {_fmt(logs[k])}" for k in SHOWN if k in logs)
        done = state.global_step - self.first_step
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (state.max_steps - state.global_step) if done else 0.0
        log.info("step %d/%d  %s  (%s elapsed, eta %s)", state.global_step, state.max_steps, shown,
                 format_seconds(elapsed), format_seconds(eta))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
