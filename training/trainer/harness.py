"""The Hugging Face Trainer as this harness runs it: arguments from the config, atomic checkpoints
with best/recent retention, and the harness state carried in every checkpoint."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time

import torch
from transformers import PrinterCallback, Trainer, TrainingArguments

from configs.base import TrainingConfig
from training import distributed
from training.checkpointing import checkpoints
from training.checkpointing.eval_loss import best_after, usable
from training.checkpointing.retention import checkpoints_to_delete
from training.checkpointing.state import HarnessState
from training.data.collator import model_input
from training.evaluation.generation import generation_batch_size, generation_bound, longest_reference, transcribe
from training.evaluation.scoring import per_sample_loss, sample_losses, sample_results, score_results, worst
from training.evaluation.worst_samples import write_worst_samples
from training.model.backends import optimizer_name
from training.model.loading import compute_dtype, eval_logits, inference_mode
from training.outcome import ANOTHER_RANK, Outcome
from training.signals import EvaluationStopped
from training.trainer import early_stopping
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


class HarnessTrainer(Trainer):
    """Trainer whose checkpoints appear whole or not at all, carry HarnessState, and are pruned
    to the best and most recent after each save; whose evaluations add CER/WER and the worst
    samples; and whose every logged event carries cost and throughput."""

    def __init__(self, *args, config: TrainingConfig, harness_state: HarnessState, backend: str,
                 apply_new_learning_rate: bool = False, cost_meter=None, tracker=None,
                 outcome: Outcome | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.remove_callback(PrinterCallback)  # training.trainer.progress prints instead
        self.config = config
        self.harness_state = harness_state
        self.backend = backend
        self.apply_new_learning_rate = apply_new_learning_rate
        self.cost_meter = cost_meter
        self.tracker = tracker
        self.throughput = ThroughputMeter(self.args.train_batch_size * self.args.gradient_accumulation_steps
                                          * self.args.world_size)
        self.last_eval: tuple[int, float | None] = (-1, None)
        self.outcome = outcome or Outcome()  # why training stopped; early stopping sets it here
        self._urgent_save = False  # the save under way must fit a stop signal's grace (optimizer state last)
        self._eval_losses: list | None = None  # during an evaluation: per-sample losses, batch by batch
        self._eval_set_prepared = False  # the eval set is fixed for the run: prepared at the first evaluation
        self._transcription_bound: int | None = None  # eval_max_new_tokens resolved at the first evaluation
        self._saving_into: str | None = None

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if self.cost_meter is not None:
            logs.update(self.cost_meter.metrics(self.state.global_step, self.state.max_steps))
        if "loss" in logs:
            logs.update(self.throughput.metrics(self.state.global_step))
        super().log(logs, start_time)

    def evaluation_loop(self, *args, **kwargs):
        # The eval-loss pass also yields each sample's loss (compute_loss), so the worst samples
        # need no second forward pass; collected in dataset order, on every rank.
        self._eval_losses = []
        try:
            with eval_logits(self.backend):
                output = super().evaluation_loop(*args, **kwargs)
            losses = torch.cat(self._eval_losses).tolist() if self._eval_losses else []
        finally:
            self._eval_losses = None
        prefix = kwargs.get("metric_key_prefix", "eval")
        if self.config.eval_generate_samples != 0:
            metrics = self.transcription_metrics(losses)
            output.metrics.update({f"{prefix}_{k}": v for k, v in metrics.items()})
        return output

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._eval_losses is None or model.training:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        labels = inputs["labels"]
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        logits = getattr(outputs, "logits", None)
        if logits is not None and logits.shape[:2] == labels.shape:
            losses = per_sample_loss(logits, labels)
        else:  # a backend that kept its logits to itself: NaN asks for a second pass
            losses = torch.full((labels.shape[0],), float("nan"), device=labels.device)
        # Every rank runs every eval batch, so this gather is collective; it drops the samples the
        # sampler repeated to even out the last batch, as the Trainer's own gather does.
        self._eval_losses.append(self.accelerator.gather_for_metrics(losses.detach()).cpu())
        return (loss, outputs) if return_outputs else loss

    def transcribed_count(self) -> int:
        """How many eval samples (the first ones) each evaluation transcribes, all ranks together."""
        total = len(self.eval_dataset)
        return total if self.config.eval_generate_samples < 0 else min(self.config.eval_generate_samples, total)

    def prepare_eval_set(self) -> None:
        """Once, at the first evaluation, on every rank: the samples this rank reads, its
        transcriptions first (they are read twice), then its eval_loss batches, each as the
        Trainer's eval DataLoader hands them to this rank (training.data.prepared)."""
        if self._eval_set_prepared:
            return
        self._eval_set_prepared = True
        transcribed = distributed.my_share(self.transcribed_count()) if self.config.eval_generate_samples != 0 else []
        batches = self.get_eval_dataloader().batch_sampler  # indices only: nothing is read here
        self.eval_dataset.prepare([*transcribed, *(i for batch in batches for i in batch)], self.stop_requested)

    def transcription_bound(self, samples: list[dict]) -> int:
        """eval_max_new_tokens, resolved once: the longest reference is taken over every rank's share."""
        if self._transcription_bound is None:
            longest, = distributed.largest([longest_reference(self.data_collator, [s["text"] for s in samples])])
            self._transcription_bound = generation_bound(self.config.eval_max_new_tokens, self.config.max_new_tokens,
                                                         longest)
        return self._transcription_bound

    def transcription_metrics(self, eval_losses: list[float]) -> dict[str, float]:
        """CER/WER/exact match over the first eval_generate_samples eval samples, and the worst ones.
        Every rank transcribes its share; rank 0 gathers, scores and returns them (the others: {})."""
        dataset = self.eval_dataset
        count = self.transcribed_count()
        indices = distributed.my_share(count)
        samples = dataset.__getitems__(indices)
        bound = self.transcription_bound(samples)
        log.info("transcribing %d eval samples at step %d, at most %d tokens each", count, self.state.global_step,
                 bound)
        try:
            results = self.my_results(samples, indices, eval_losses, bound)
        except EvaluationStopped:
            results = None
        # A rank cut short must not wait in the other collective while the rest gather: all agree first.
        if distributed.any_rank([results is None])[0]:
            raise EvaluationStopped
        shares = distributed.gather_on_main(list(zip(indices, results)))
        if shares is None:
            return {}
        ordered = sorted((pair for share in shares for pair in share), key=lambda pair: pair[0])
        results = [result for _, result in ordered]
        if self.config.worst_samples > 0 and results:
            chosen = worst(results, self.config.worst_samples)
            index_of = {result.key: index for index, result in ordered}
            images = {r.key: dataset.image(index_of[r.key]) for r in chosen}
            write_worst_samples(self.args.output_dir, self.state.global_step, chosen, images)
            if self.tracker is not None:
                self.tracker.worst_samples(self.state.global_step, chosen, images)
        return score_results(results)

    def my_results(self, samples: list[dict], indices, eval_losses: list[float], max_new_tokens: int) -> list:
        """This rank's share transcribed, with each sample's loss; EvaluationStopped on a stop signal."""
        batch_size = generation_batch_size(self.config.eval_generate_batch_size, self.args.device.type == "cuda")
        with inference_mode(self.model, self.backend):
            predictions = transcribe(self.model, self.data_collator, [model_input(s) for s in samples],
                                     max_new_tokens, batch_size, self.stop_requested)
        if len(eval_losses) == len(self.eval_dataset) and not any(math.isnan(eval_losses[i]) for i in indices):
            losses = [eval_losses[i] for i in indices]
        else:
            log.warning("per-sample losses were not in the eval pass: a second forward pass computes them")
            losses = sample_losses(self.model, self.data_collator, samples, self.args.per_device_eval_batch_size,
                                   self.stop_requested)
        return sample_results(samples, predictions, losses)

    def stop_requested(self) -> str | None:
        """The stop signal's name once one arrived (checked between eval batches and generated tokens)."""
        return self.outcome.signal

    def prediction_step(self, *args, **kwargs):
        # Every rank runs the same number of eval batches: they agree here, so all stop together.
        if distributed.any_rank([bool(self.stop_requested())])[0]:
            raise EvaluationStopped
        return super().prediction_step(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        step = self.state.global_step
        log.info("evaluating at step %d: eval_loss over %d samples", step, len(self.eval_dataset))
        try:
            self.prepare_eval_set()
            metrics, cut = super().evaluate(*args, **kwargs), False
        except EvaluationStopped:
            metrics, cut = {}, True
        # Every rank is cut at the same point: the eval batches (prediction_step) and the
        # transcriptions (transcription_metrics) each agree on a stop across ranks.
        if cut:
            self.outcome.stop_signal(ANOTHER_RANK)  # kept as it is where this rank got the signal itself
            log.info("evaluation at step %d cut short by %s: not recorded; saving a checkpoint at this step",
                     step, self.outcome.signal)
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
            self.outcome.stop_early()
            self.control.should_training_stop = True
        return metrics

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
            self.apply_retention()
        self._urgent_save = False
        self.accelerator.wait_for_everyone()

    def add_optimizer_state(self, path: str, started: float) -> None:
        """The second half of an urgent save: the optimizer state into the published checkpoint."""
        checkpoints.add_file(path, checkpoints.OPTIMIZER_FILE, lambda file: torch.save(self.optimizer.state_dict(), file))
        log.info("checkpoint %s: optimizer state added (%.2f s after the save began, %.1f MB)", os.path.basename(path),
                 time.monotonic() - started, os.path.getsize(os.path.join(path, checkpoints.OPTIMIZER_FILE)) / 1e6)

    def apply_retention(self) -> None:
        complete, _ = checkpoints.scan(self.args.output_dir)
        for doomed in checkpoints_to_delete(complete, self.config.keep_best, self.config.keep_recent):
            checkpoints.delete(doomed.path)
            log.info("retention: removed %s", os.path.basename(doomed.path))
