"""CER/WER and exact match against values computed by hand; early stopping as a table."""

from __future__ import annotations

import pytest

from training.early_stopping import after_evaluation, should_stop
from training.eval_loss import best_after
from training.evaluation import SampleResult, sample_cer, scores, worst

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
