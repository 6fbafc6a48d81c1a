"""CER/WER and exact match against values computed by hand; early stopping as a table; the
training-time evaluation against a separate pass."""

from __future__ import annotations

import json

import pytest

from conftest import train_here
from training.data.collator import VisionChatCollator
from training.data.sources import SyntheticSplit
from training.early_stopping import after_evaluation, should_stop
from training.eval_loss import best_after
from training.inference import load_trained
from training.metrics_log import read_events
from training.run_config import saved_config
from training.scoring import SampleResult, evaluate_samples, sample_cer, scores, worst

NAN, INF = float("nan"), float("inf")


def test_scores_match_hand_computed_values():
    targets = ["API NO: 42-123-45678", "STATE: TEXAS"]
    predictions = ["API NO: 42-123-45679", "STATE: TEXAS"]
    got = scores(targets, predictions)
    # one substituted character over 20 + 12 reference characters
    assert got["cer"] == pytest.approx(1 / 32)
    # one wrong word over 3 + 2 reference words
    assert got["wer"] == pytest.approx(1 / 5)
    assert got["exact_match"] == 0.5


def test_insertions_and_deletions_count_as_edits():
    assert sample_cer("WELL", "WEL") == pytest.approx(1 / 4)
    assert sample_cer("WELL", "WELLS") == pytest.approx(1 / 4)
    assert sample_cer("WELL", "") == 1.0
    assert sample_cer("", "") == 0.0
    assert scores(["COUNTY: LEA"], ["COUNTY LEA"])["wer"] == pytest.approx(0.5)  # "COUNTY:" -> "COUNTY"


def test_worst_is_by_loss():
    results = [SampleResult(str(i), "t", "p", loss, 0.0) for i, loss in enumerate([0.1, 2.0, 0.5, 3.0])]
    assert [r.key for r in worst(results, 2)] == ["3", "1"]


@pytest.mark.parametrize("losses, min_delta, patience, stops_after", [
    ([1.0, 0.9, 0.8, 0.7], 0.0, 2, None),          # always improving
    ([1.0, 1.0, 1.0], 0.0, 2, 3),                  # flat: stop at the 2nd non-improvement
    ([1.0, 0.995, 0.99, 0.985], 0.01, 2, 3),       # improvements smaller than min_delta don't count
    ([1.0, 1.1, 0.5, 0.6, 0.7], 0.0, 2, 5),        # an improvement resets the count
    ([1.0, 1.0, 1.0, 1.0], 0.0, 0, None),          # patience 0: never
    # a non-finite eval_loss is no eval_loss: it neither becomes the reference nor counts
    ([NAN, 1.0, 0.9, 0.8], 0.0, 2, None),
    ([1.0, NAN, 0.9, NAN, 0.8], 0.0, 1, None),
    ([1.0, INF, 1.0, 1.0], 0.0, 2, 4),
])
def test_early_stopping(losses, min_delta, patience, stops_after):
    reference, bad = None, 0
    stopped = None
    for count, loss in enumerate(losses, start=1):
        reference, bad = after_evaluation(reference, bad, loss, min_delta)
        if should_stop(bad, patience):
            stopped = count
            break
    assert stopped == stops_after


@pytest.mark.parametrize("losses, best", [
    ([1.0, 0.5, 0.7], (0.5, 2)),
    ([NAN, 1.0, 0.9], (0.9, 3)),       # a NaN first does not become an unbeatable best
    ([1.0, NAN, INF, -INF], (1.0, 1)),  # nor later
    ([NAN, NAN], (None, None)),
])
def test_best_eval_loss_ignores_non_finite_losses(losses, best):
    got = (None, None)
    for step, loss in enumerate(losses, start=1):
        got = best_after(*got, loss, step)
    assert got == best


def test_evaluation_in_training_scores_as_a_separate_unbatched_pass_does(tmp_path):
    """The scores of train.py's evaluation (batched transcription, each sample's loss taken from the
    eval-loss pass) are those of transcribing one image at a time and a forward pass of its own."""
    out = tmp_path / "run"
    result = train_here(out, "max_steps=2", "eval_steps=2", "save_steps=2", "eval_subset=8", "eval_generate_samples=6",
                        "eval_generate_batch_size=4", "worst_samples=3", "max_new_tokens=24")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "second forward pass" not in result.stdout, "the losses should come from the eval pass"
    event = [e for e in read_events(str(out / "metrics.jsonl")) if "eval_cer" in e][-1]
    assert event["step"] == 2

    checkpoint = str(out / "checkpoint-2")  # the weights the evaluation at step 2 saw
    config = saved_config(checkpoint)
    loaded = load_trained(checkpoint, config, "transformers")
    collator = VisionChatCollator(loaded.processor, config.instruction)
    samples = [SyntheticSplit("validation", 8)[i] for i in range(6)]
    metrics, results = evaluate_samples(loaded.model, collator, samples, 24, batch_size=1)
    assert (event["eval_cer"], event["eval_wer"], event["eval_exact_match"]) == \
        (metrics["cer"], metrics["wer"], metrics["exact_match"])

    separate = {r.key: r for r in results}
    written = [json.loads(line) for line in (out / "worst_samples" / "step-2.jsonl").read_text().splitlines()]
    assert [w["key"] for w in written] == [r.key for r in worst(results, 3)]
    for row in written:
        assert row["prediction"] == separate[row["key"]].prediction
        assert row["loss"] == pytest.approx(separate[row["key"]].loss, rel=1e-4)
