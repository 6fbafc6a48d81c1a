"""Where metrics go: metrics.jsonl always, and Weights & Biases, one run per experiment,
continued across preemptions through the run id kept in the checkpoint state; offline (synced
later) when there is no API key.

Only what this module sends reaches W&B: the resolved config, git and hardware facts, package
versions and metrics. Secrets live in the environment only and are never put in any of those.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import string
from importlib import metadata

from transformers import TrainerCallback

from training.metrics_log import METRICS_FILE, append_event, clean, drop_torn_tail
from training.wandb_env import wandb_mode

log = logging.getLogger("training")

# metrics.jsonl keeps the Trainer's names; W&B gets the names dashboards expect.
RENAMED = {"loss": "train_loss", "epoch": "train/epoch"}
STEP_METRIC = "train/global_step"
VERSIONED = ("torch", "transformers", "peft", "accelerate", "datasets", "unsloth", "bitsandbytes", "wandb")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def new_run_id() -> str:
    """An id in W&B's own style (8 lowercase letters and digits), chosen here so it is known, and
    stored in the checkpoint state, before the run is created."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def wandb_payload(event: dict, step: int) -> dict:
    payload = {STEP_METRIC: step}
    # The Trainer's end-of-training summary has its own train_loss (the mean over the run): keep it
    # off the per-step train_loss curve.
    summary = "train_runtime" in event
    for key, value in event.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        name = "train/mean_loss" if summary and key == "train_loss" else RENAMED.get(key, key)
        payload[name] = value
    return payload


class MetricsFileCallback(TrainerCallback):
    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, METRICS_FILE)
        drop_torn_tail(self.path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            append_event(self.path, {"step": state.global_step, **{k: clean(v) for k, v in logs.items()}})


class TrackingCallback(TrainerCallback):
    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.tracker.log(logs, state.global_step)


class Tracker:
    def __init__(self, run, mode: str):
        self.run, self.mode = run, mode

    @classmethod
    def start(cls, config, state, backend: str, gpu: tuple[str | None, int], environ=os.environ):
        """The W&B run for this experiment (resumed when the checkpoint names one), or None."""
        mode, why = wandb_mode(config.report_to_wandb, environ)
        if mode == "disabled":
            log.info("W&B off (%s)", why)
            return None
        import dataclasses

        import wandb

        run_id = state.wandb_run_id or environ.get("WANDB_RUN_ID") or new_run_id()
        tracked = {**dataclasses.asdict(config), "git_branch": state.git_branch, "git_commit": state.git_commit,
                   "git_dirty": state.git_dirty, "gpu_name": gpu[0] or "cpu", "gpu_count": gpu[1],
                   "backend": backend, "versions": package_versions()}
        from training.errors import UserError
        from training.retry import NetworkCallFailed, call

        def init(mode: str):
            return call("W&B init", wandb.init, project=config.wandb_project, name=config.experiment_name, id=run_id,
                        resume="allow", dir=config.output_dir, config=tracked, mode=mode, allow_val_change=True,
                        settings=wandb.Settings(console="off", quiet=True))

        try:
            run = init(mode)
        except NetworkCallFailed as error:
            if not error.transient:
                raise UserError(f"{error}; check WANDB_API_KEY (or set WANDB_MODE=offline)") from None
            # W&B unreachable: training is what costs money, so it goes on, logged offline to sync later.
            log.warning("%s: logging offline instead", error)
            mode, why = "offline", "W&B unreachable"
            run = init(mode)
        run.define_metric(STEP_METRIC)
        run.define_metric("*", step_metric=STEP_METRIC, step_sync=True)
        state.wandb_run_id = run.id
        if mode == "offline":
            log.info("W&B offline (%s): run %s in %s; upload later with `wandb sync %s`", why, run.id,
                     run.dir, os.path.dirname(run.dir))
        else:
            log.info("W&B run %s: %s", run.id, run.url)
        return cls(run, mode)

    @property
    def url(self) -> str | None:
        return self.run.url if self.mode == "online" else None

    def log(self, event: dict, step: int) -> None:
        self.run.log(wandb_payload(event, step))

    def alert(self, title: str, text: str) -> None:
        try:
            self.run.alert(title=title, text=text)
        except Exception as error:  # an alert is a courtesy: never let it stop training
            log.warning("W&B alert failed: %s", error)

    def worst_samples(self, step: int, results, images: dict) -> None:
        import wandb

        table = wandb.Table(columns=["step", "key", "image", "target", "prediction", "loss", "cer"])
        for r in results:
            image = wandb.Image(images[r.key]) if r.key in images else None
            table.add_data(step, r.key, image, r.target, r.prediction, r.loss, r.cer)
        self.run.log({STEP_METRIC: step, "eval/worst_samples": table})

    def finish(self, exit_code: int) -> None:
        self.run.finish(exit_code=exit_code)
