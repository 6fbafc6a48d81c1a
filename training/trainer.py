"""The Hugging Face Trainer as this harness runs it: arguments from the config, atomic checkpoints
with best/recent retention, and the harness state carried in every checkpoint."""

from __future__ import annotations

import logging
import os
import shutil
import time

from transformers import PrinterCallback, Trainer, TrainingArguments

from configs.base import TrainingConfig
from training import checkpoints, distributed, early_stopping
from training.backends import optimizer_name
from training.eval_loss import best_after, usable
from training.evaluation import evaluate_samples, worst
from training.modeling import compute_dtype, inference_mode
from training.progress import ThroughputMeter
from training.retention import checkpoints_to_delete
from training.signals import EvaluationStopped
from training.state import HarnessState
from training.worst_samples import write_worst_samples

log = logging.getLogger("training")


def mixed_precision(has_cuda: bool) -> dict[str, bool]:
    """The Trainer's bf16/fp16 flags: the dtype the model was loaded in (modeling.compute_dtype)."""
    import torch

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
        save_total_limit=None,  # retention is ours: training.retention
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


class HarnessTrainer(Trainer):
    """Trainer whose checkpoints appear whole or not at all, carry HarnessState, and are pruned
    to the best and most recent after each save; whose evaluations add CER/WER and the worst
    samples; and whose every logged event carries cost and throughput."""

    def __init__(self, *args, config: TrainingConfig, harness_state: HarnessState, backend: str,
                 apply_new_learning_rate: bool = False, cost_meter=None, tracker=None,
                 stop_requested=lambda: None, **kwargs):
        super().__init__(*args, **kwargs)
        self.remove_callback(PrinterCallback)  # training.progress prints instead
        self.config = config
        self.harness_state = harness_state
        self.backend = backend
        self.apply_new_learning_rate = apply_new_learning_rate
        self.cost_meter = cost_meter
        self.tracker = tracker
        self.throughput = ThroughputMeter(self.args.train_batch_size * self.args.gradient_accumulation_steps
                                          * self.args.world_size)
        self.last_eval: tuple[int, float | None] = (-1, None)
        self.stopped_early = False
        self.stop_requested = stop_requested  # the stop signal's name, or None: checked while evaluating
        self._saving_into: str | None = None

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if self.cost_meter is not None:
            logs.update(self.cost_meter.metrics(self.state.global_step, self.state.max_steps))
        if "loss" in logs:
            logs.update(self.throughput.metrics(self.state.global_step))
        super().log(logs, start_time)

    def evaluation_loop(self, *args, **kwargs):
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        if self.is_world_process_zero() and self.config.eval_generate_samples != 0:
            output.metrics.update({f"{prefix}_{k}": v for k, v in self.transcription_metrics().items()})
        return output

    def transcription_metrics(self) -> dict[str, float]:
        """CER/WER/exact match over the first eval_generate_samples eval samples, and the worst ones."""
        dataset = self.eval_dataset
        count = len(dataset) if self.config.eval_generate_samples < 0 else min(self.config.eval_generate_samples, len(dataset))
        log.info("transcribing %d eval samples at step %d", count, self.state.global_step)
        samples = [dataset[i] for i in range(count)]
        with inference_mode(self.model, self.backend):
            metrics, results = evaluate_samples(self.model, self.data_collator, samples, self.config.max_new_tokens,
                                                self.args.per_device_eval_batch_size, self.stop_requested)
        if self.config.worst_samples > 0 and results:
            chosen = worst(results, self.config.worst_samples)
            images = {s["key"]: s["image"] for s in samples}
            write_worst_samples(self.args.output_dir, self.state.global_step, chosen, images)
            if self.tracker is not None:
                self.tracker.worst_samples(self.state.global_step, chosen, images)
        return metrics

    def prediction_step(self, *args, **kwargs):
        # Every rank runs the same number of eval batches: they agree here, so all stop together.
        if distributed.any_rank([bool(self.stop_requested())])[0]:
            raise EvaluationStopped
        return super().prediction_step(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        step = self.state.global_step
        log.info("evaluating at step %d: eval_loss over %d samples", step, len(self.eval_dataset))
        try:
            metrics, cut = super().evaluate(*args, **kwargs), False
        except EvaluationStopped:
            metrics, cut = {}, True
        # Rank 0 alone transcribes, and may be cut short while the others wait: agree once more.
        if distributed.any_rank([cut])[0]:
            log.info("evaluation at step %d cut short by %s: not recorded; saving a checkpoint at this step",
                     step, self.stop_requested() or "a stop on another rank")
            # What the Trainer's on_evaluate would have reset: the epoch end must not evaluate again.
            self.control.should_evaluate = False
            self.control.should_save = True
            self.control.should_training_stop = True
            return {}
        loss = usable(metrics.get("eval_loss"))  # NaN/inf: no eval_loss for retention, best, early stopping
        self.last_eval = (step, loss)
        state = self.harness_state
        if loss is None:
            return metrics
        state.best_eval_loss, state.best_step = best_after(state.best_eval_loss, state.best_step, loss, step)
        state.early_stopping_reference, state.evals_without_improvement = early_stopping.after_evaluation(
            state.early_stopping_reference, state.evals_without_improvement, loss, self.config.early_stopping_min_delta)
        if early_stopping.should_stop(state.evals_without_improvement, self.config.early_stopping_patience):
            log.info("early stopping at step %d: eval_loss has not improved by more than %g for %d evaluations "
                     "(best %.4g at step %s)", step, self.config.early_stopping_min_delta,
                     state.evals_without_improvement, state.best_eval_loss, state.best_step)
            self.stopped_early = True
            self.control.should_training_stop = True
        return metrics

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        if checkpoint and self.args.world_size > 1 and self.args.device.type == "cpu":
            self._load_on_cpu_ranks(checkpoint)
        else:
            super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint and self.apply_new_learning_rate:
            self._rebase_learning_rate(self.args.learning_rate)

    def load_checkpoint_weights(self, checkpoint: str) -> None:
        """The adapter of `checkpoint` into the model, and the step it was saved at, without training."""
        self._load_from_checkpoint(checkpoint)
        self.state.global_step = self.harness_state.step

    def _load_on_cpu_ranks(self, checkpoint: str) -> None:
        """CPU ranks under torchrun: the Trainer maps the optimizer state to args.device, "cpu:<n>",
        which torch.load cannot restore; the state is the same, so load it to plain "cpu"."""
        import torch

        optimizer = os.path.join(checkpoint, "optimizer.pt")
        scheduler = os.path.join(checkpoint, "scheduler.pt")
        if os.path.isfile(optimizer) and os.path.isfile(scheduler):
            self.optimizer.load_state_dict(torch.load(optimizer, map_location="cpu", weights_only=True))
            self.lr_scheduler.load_state_dict(torch.load(scheduler, map_location="cpu", weights_only=True))

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

    def _save_checkpoint(self, model, trial) -> None:
        step = self.state.global_step
        output_dir = self.args.output_dir
        staging = checkpoints.staging_path(output_dir, step)
        started = time.monotonic()
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
            path = checkpoints.publish(staging, output_dir, step)
            log.info("checkpoint %s saved (%.2f s, %.1f MB)", os.path.basename(path),
                     time.monotonic() - started, size / 1e6)
            self.apply_retention()
        self.accelerator.wait_for_everyone()

    def apply_retention(self) -> None:
        complete, _ = checkpoints.scan(self.args.output_dir)
        for doomed in checkpoints_to_delete(complete, self.config.keep_best, self.config.keep_recent):
            checkpoints.delete(doomed.path)
            log.info("retention: removed %s", os.path.basename(doomed.path))
