"""Scoring transcriptions: CER and WER (jiwer), exact match, per-sample loss, the worst samples."""

from __future__ import annotations

from dataclasses import dataclass

import jiwer
import torch

from training.data.collator import IGNORE_INDEX
from training.evaluation.generation import StopCheck, check_stop, evaluating, transcribe


@dataclass
class SampleResult:
    key: str
    target: str
    prediction: str
    loss: float
    cer: float


def scores(targets: list[str], predictions: list[str]) -> dict[str, float]:
    """Corpus CER and WER (edits over reference characters / words) and the exact-match rate."""
    if not targets:
        return {}
    pairs = [(t, p) for t, p in zip(targets, predictions) if t]
    references, hypotheses = [t for t, _ in pairs], [p for _, p in pairs]
    return {
        "cer": jiwer.cer(references, hypotheses) if references else 0.0,
        "wer": jiwer.wer(references, hypotheses) if references else 0.0,
        "exact_match": sum(t == p for t, p in zip(targets, predictions)) / len(targets),
    }


def sample_cer(target: str, prediction: str) -> float:
    if not target:
        return 0.0 if not prediction else 1.0
    return jiwer.cer(target, prediction)


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token loss of each sequence's labelled tokens, as the training loss counts them. Only the
    labelled positions are taken to fp32: the whole (batch, length, vocabulary) logits would be GBs."""
    shifted_labels = labels[:, 1:]
    counted = shifted_labels != IGNORE_INDEX
    rows, columns = counted.nonzero(as_tuple=True)
    token_loss = torch.nn.functional.cross_entropy(logits[:, :-1][rows, columns].float(),
                                                   shifted_labels[rows, columns], reduction="none")
    totals = torch.zeros(labels.shape[0], dtype=torch.float32, device=labels.device).index_add_(0, rows, token_loss)
    return totals / counted.sum(dim=1).clamp(min=1)


def sample_losses(model, collator, samples: list[dict], batch_size: int,
                  should_stop: StopCheck | None = None) -> list[float]:
    """Each sample's loss from a forward pass of its own; during training the eval pass provides
    them instead (HarnessTrainer), this is for scoring an adapter outside training. A stop request
    raises EvaluationStopped between batches."""
    losses: list[float] = []
    with evaluating(model) as device:
        for start in range(0, len(samples), batch_size):
            check_stop(should_stop)
            batch = {k: v.to(device) for k, v in collator(samples[start:start + batch_size]).items()}
            labels = batch.pop("labels")
            losses.extend(per_sample_loss(model(**batch).logits, labels).tolist())
    return losses


def sample_results(samples: list[dict], predictions: list[str], losses: list[float]) -> list[SampleResult]:
    return [SampleResult(s["key"], s["text"], p, loss, sample_cer(s["text"], p))
            for s, p, loss in zip(samples, predictions, losses)]


def score_results(results: list[SampleResult]) -> dict[str, float]:
    return scores([r.target for r in results], [r.prediction for r in results])


def evaluate_samples(model, collator, samples: list[dict], max_new_tokens: int, batch_size: int,
                     should_stop: StopCheck | None = None) -> tuple[dict[str, float], list[SampleResult]]:
    """Greedy transcriptions of `samples`, their scores, and each sample's loss and CER; a stop
    request raises EvaluationStopped."""
    predictions = transcribe(model, collator, [s["image"] for s in samples], max_new_tokens, batch_size, should_stop)
    results = sample_results(samples, predictions, sample_losses(model, collator, samples, batch_size, should_stop))
    return score_results(results), results


def worst(results: list[SampleResult], k: int) -> list[SampleResult]:
    return sorted(results, key=lambda r: r.loss, reverse=True)[:k]
