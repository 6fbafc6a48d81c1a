"""Scoring transcriptions: CER and WER (jiwer), exact match, per-sample loss, the worst samples."""

from __future__ import annotations

from dataclasses import dataclass

import jiwer
import torch

from training.data.collator import IGNORE_INDEX
from training.generation import StopCheck, check_stop, evaluating, transcribe


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


def sample_losses(model, collator, samples: list[dict], batch_size: int,
                  should_stop: StopCheck | None = None) -> list[float]:
    """Mean token loss of each sample's transcription, as the training loss counts it."""
    losses: list[float] = []
    with evaluating(model) as device:
        for start in range(0, len(samples), batch_size):
            check_stop(should_stop)
            batch = {k: v.to(device) for k, v in collator(samples[start:start + batch_size]).items()}
            labels = batch.pop("labels")
            logits = model(**batch).logits.float()
            shifted_logits, shifted_labels = logits[:, :-1], labels[:, 1:]
            token_loss = torch.nn.functional.cross_entropy(
                shifted_logits.transpose(1, 2), shifted_labels, ignore_index=IGNORE_INDEX, reduction="none")
            counted = (shifted_labels != IGNORE_INDEX).sum(dim=1).clamp(min=1)
            losses.extend((token_loss.sum(dim=1) / counted).tolist())
    return losses


def evaluate_samples(model, collator, samples: list[dict], max_new_tokens: int, batch_size: int,
                     should_stop: StopCheck | None = None) -> tuple[dict[str, float], list[SampleResult]]:
    """Greedy transcriptions of `samples`, their scores, and each sample's loss and CER; a stop
    request raises EvaluationStopped."""
    predictions = transcribe(model, collator, [s["image"] for s in samples], max_new_tokens, batch_size, should_stop)
    losses = sample_losses(model, collator, samples, batch_size, should_stop)
    results = [SampleResult(s["key"], s["text"], p, loss, sample_cer(s["text"], p))
               for s, p, loss in zip(samples, predictions, losses)]
    return scores([s["text"] for s in samples], predictions), results


def worst(results: list[SampleResult], k: int) -> list[SampleResult]:
    return sorted(results, key=lambda r: r.loss, reverse=True)[:k]
