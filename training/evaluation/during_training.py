"""The trainer's evaluations: the eval_loss pass yields each sample's loss, then the first
eval_generate_samples samples are transcribed (CER, WER, exact match) and the worst ones written
(worst_samples.py) and sent to W&B; a stop signal cuts an evaluation short on every rank together.

A mixin of the Trainer (training.trainer.harness.HarnessTrainer): it overrides the Trainer's
evaluation hooks, and reads the trainer's config, backend, tracker, outcome and harness_state.
"""

from __future__ import annotations

import logging
import math

import torch

from training import distributed
from training.checkpointing.eval_loss import best_after, usable
from training.data.collator import model_input
from training.evaluation.generation import generation_batch_size, generation_bound, longest_reference, transcribe
from training.evaluation.scoring import per_sample_loss, sample_losses, sample_results, score_results, worst
from training.evaluation.worst_samples import write_worst_samples
from training.model.loading import eval_logits, inference_mode
from training.outcome import ANOTHER_RANK
from training.signals import EvaluationStopped

log = logging.getLogger("training")


class TranscribingEvaluation:
    """Evaluations with transcription metrics and the worst samples, cut short together on a stop."""

    def __init__(self, *args, **kwargs):
        self.last_eval: tuple[int, float | None] = (-1, None)
        self._eval_losses: list | None = None  # during an evaluation: per-sample losses, batch by batch
        self._eval_set_prepared = False  # the eval set is fixed for the run: prepared at the first evaluation
        self._transcription_bound: int | None = None  # eval_max_new_tokens resolved at the first evaluation
        super().__init__(*args, **kwargs)

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
        if loss is not None:  # (early stopping has judged it already: training.trainer.early_stopping's callback)
            state.best_eval_loss, state.best_step = best_after(state.best_eval_loss, state.best_step, loss, step)
        return metrics
