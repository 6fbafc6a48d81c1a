"""The Hugging Face Trainer as this harness runs it: arguments from the config, and its save/load
overrides: atomic checkpoints (pruned by the run's Lifecycle), the harness state carried in every
checkpoint, a resume without optimizer state or with a new learning rate. Its evaluations are a mixin
of the evaluation package (training.evaluation.during_training)."""

from __future__ import annotations

import logging
import os
import shutil
import time

import torch
from transformers import PrinterCallback, Trainer, TrainingArguments

from configs.base import TrainingConfig
from training import distributed
from training.checkpointing import checkpoints
from training.checkpointing.lifecycle import Lifecycle
from training.checkpointing.state import HarnessState
from training.evaluation.during_training import TranscribingEvaluation
from training.model.backends import optimizer_name
from training.model.loading import compute_dtype
from training.outcome import Outcome
from training.trainer.progress import ThroughputMeter

log = logging.getLogger("training")


def mixed_precision(has_cuda: bool) -> dict[str, bool]:
    """The Trainer's bf16/fp16 flags: the dtype the model was loaded in (modeling.compute_dtype)."""
    dtype = compute_dtype(has_cuda)
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}


def training_arguments(config: TrainingConfig, backend: str, has_cuda: bool) -> TrainingArguments:
    return TrainingArguments(
        output_dir=config.output_dir,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type=config.lr_scheduler_type,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        optim=optimizer_name(config, backend),
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=None,  # retention is ours: training.checkpointing.retention
        **mixed_precision(has_cuda),
        use_cpu=not has_cuda,
        ddp_backend="gloo" if distributed.world_size() > 1 and not has_cuda else None,  # torchrun on CPU
        ddp_find_unused_parameters=False,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        label_names=["labels"],
        prediction_loss_only=True,
        dataloader_num_workers=(4 if has_cuda else 0) if config.dataloader_workers == -1 else config.dataloader_workers,
    )


class HarnessTrainer(TranscribingEvaluation, Trainer):
    """Trainer whose checkpoints appear whole or not at all, carry HarnessState, and are pruned
    (the run's Lifecycle) to the best and most recent after each save; whose every logged event
    carries cost and throughput. Its evaluations are training.evaluation.during_training's."""

    def __init__(self, *args, config: TrainingConfig, harness_state: HarnessState, backend: str,
                 apply_new_learning_rate: bool = False, cost_meter=None, tracker=None,
                 outcome: Outcome | None = None, lifecycle: Lifecycle | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lifecycle = lifecycle or Lifecycle(self.args.output_dir)
        self.remove_callback(PrinterCallback)  # training.trainer.progress prints instead
        self.config = config
        self.harness_state = harness_state
        self.backend = backend
        self.apply_new_learning_rate = apply_new_learning_rate
        self.cost_meter = cost_meter
        self.tracker = tracker
        self.throughput = ThroughputMeter(self.args.train_batch_size * self.args.gradient_accumulation_steps
                                          * self.args.world_size)
        self.outcome = outcome or Outcome()  # why training stopped; early stopping sets it there
        self._urgent_save = False  # the save under way must fit a stop signal's grace (optimizer state last)
        self._saving_into: str | None = None

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if self.cost_meter is not None:
            logs.update(self.cost_meter.metrics(self.state.global_step, self.state.max_steps))
        if "loss" in logs:
            logs.update(self.throughput.metrics(self.state.global_step))
        super().log(logs, start_time)

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        if checkpoint and not os.path.isfile(os.path.join(checkpoint, checkpoints.OPTIMIZER_FILE)):
            self._load_without_optimizer(checkpoint)
        elif checkpoint and self.args.world_size > 1 and self.args.device.type == "cpu":
            self._load_states(os.path.join(checkpoint, checkpoints.OPTIMIZER_FILE),
                              os.path.join(checkpoint, checkpoints.SCHEDULER_FILE))
        else:
            super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint and self.apply_new_learning_rate:
            self._rebase_learning_rate(self.args.learning_rate)

    def load_checkpoint_weights(self, checkpoint: str) -> None:
        """The adapter of `checkpoint` into the model, and the step it was saved at, without training."""
        self._load_from_checkpoint(checkpoint)
        self.state.global_step = self.harness_state.step

    def _load_states(self, optimizer_file: str | None, scheduler_file: str) -> None:
        """Optimizer and scheduler states from these files. CPU ranks under torchrun load to plain
        "cpu": the Trainer would map to args.device, "cpu:<n>", which torch.load cannot restore."""
        location = self.args.device if self.args.world_size > 1 and self.args.device.type != "cpu" else "cpu"
        if optimizer_file is not None:
            self.optimizer.load_state_dict(torch.load(optimizer_file, map_location=location, weights_only=True))
        self.lr_scheduler.load_state_dict(torch.load(scheduler_file, map_location="cpu", weights_only=True))

    def _load_without_optimizer(self, checkpoint: str) -> None:
        """A checkpoint whose optimizer state did not fit the SIGTERM grace: its schedule position,
        and the Adam moments of the newest earlier checkpoint (a few steps old), else fresh ones.
        The Trainer alone would load neither, and restart the learning-rate schedule."""
        step = checkpoints.step_of(checkpoint)
        donor = checkpoints.optimizer_donor(os.path.dirname(os.path.normpath(checkpoint)), step)
        self._load_states(donor and os.path.join(donor, checkpoints.OPTIMIZER_FILE),
                          os.path.join(checkpoint, checkpoints.SCHEDULER_FILE))
        # The donor's parameter groups carry its own step's rates; this step's come from the schedule.
        for group, rate in zip(self.optimizer.param_groups, self.lr_scheduler.get_last_lr()):
            group["lr"] = rate
        log.warning("%s has no optimizer state (the stop signal's grace ended before it was written): "
                    "continuing with %s; the resumed run is close to, not exactly, an uninterrupted one",
                    os.path.basename(os.path.normpath(checkpoint)),
                    f"the optimizer moments of {os.path.basename(donor)}" if donor else "fresh optimizer moments")

    def _rebase_learning_rate(self, learning_rate: float) -> None:
        """After loading a checkpoint trained with another learning_rate: keep the schedule's
        position and shape, scaled to the new peak (the loaded state would keep the old one)."""
        scheduler = self.lr_scheduler
        if not hasattr(scheduler, "lr_lambdas"):
            log.warning("learning_rate changed, but the %s scheduler cannot be rebased: it continues "
                        "with the checkpoint's rates", type(scheduler).__name__)
            return
        scheduler.base_lrs = [learning_rate] * len(scheduler.base_lrs)
        rates = [learning_rate * factor(scheduler.last_epoch) for factor in scheduler.lr_lambdas]
        for group, rate in zip(self.optimizer.param_groups, rates):
            group["initial_lr"], group["lr"] = learning_rate, rate
        scheduler._last_lr = rates
        log.info("learning_rate %.3g applied from step %d (schedule position kept)", learning_rate,
                 self.state.global_step)

    def _get_output_dir(self, trial) -> str:
        # While saving, the Trainer writes its checkpoint-<step> under .staging/ instead.
        return self._saving_into or super()._get_output_dir(trial)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not self._urgent_save:
            super()._save_optimizer_and_scheduler(output_dir)
        elif self.args.should_save:  # the optimizer state follows once the checkpoint is published
            torch.save(self.lr_scheduler.state_dict(), os.path.join(output_dir, checkpoints.SCHEDULER_FILE))

    def _save_checkpoint(self, model, trial) -> None:
        step = self.state.global_step
        output_dir = self.args.output_dir
        staging = checkpoints.staging_path(output_dir, step)
        started = time.monotonic()
        # After a stop signal the save races RunPod's SIGKILL (5 s): the optimizer state, the
        # largest part, is written after everything a resume needs (see training.checkpointing.checkpoints).
        self._urgent_save = self.stop_requested() is not None and not (self.is_deepspeed_enabled or self.is_fsdp_enabled)
        if self.args.should_save and os.path.exists(staging):
            shutil.rmtree(staging)  # left by a save that was killed at this same step
        self.accelerator.wait_for_everyone()
        self._saving_into = os.path.dirname(staging)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._saving_into = None
        self.accelerator.wait_for_everyone()  # every rank has written its part (RNG states)
        if self.args.should_save:
            state = self.harness_state
            state.step = step
            state.eval_loss = self.last_eval[1] if self.last_eval[0] == step else None
            if self.cost_meter is not None:
                state.cost_usd, state.device_hours = self.cost_meter.snapshot()
            state.save(staging)
            size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(staging) for f in files)
            # An urgent save publishes sizes only, hashing in its second half: the grace is for the write.
            path = checkpoints.publish(staging, output_dir, step, digest=not self._urgent_save)
            log.info("checkpoint %s saved (%.2f s, %.1f MB)", os.path.basename(path),
                     time.monotonic() - started, size / 1e6)
            if self._urgent_save:
                self.add_optimizer_state(path, started)
            self.lifecycle.prune(self.config.keep_best, self.config.keep_recent)
        self._urgent_save = False
        self.accelerator.wait_for_everyone()

    def add_optimizer_state(self, path: str, started: float) -> None:
        """The second half of an urgent save: the optimizer state into the published checkpoint."""
        checkpoints.add_file(path, checkpoints.OPTIMIZER_FILE, lambda file: torch.save(self.optimizer.state_dict(), file))
        log.info("checkpoint %s: optimizer state added (%.2f s after the save began, %.1f MB)", os.path.basename(path),
                 time.monotonic() - started, os.path.getsize(os.path.join(path, checkpoints.OPTIMIZER_FILE)) / 1e6)
