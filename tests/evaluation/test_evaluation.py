"""CER/WER and exact match against values computed by hand; early stopping as a table; the
training-time evaluation against a separate pass."""

from __future__ import annotations

import json
import math

import pytest
from transformers import AutoProcessor

from conftest import train_here
from training.checkpointing.eval_loss import best_after
from training.data.collator import END_OF_TURN, VisionChatCollator
from training.data.sources import SyntheticSplit
from training.evaluation.scoring import SampleResult, evaluate_samples, sample_cer, scores, worst
from training.metrics_log import read_events
from training.model.inference import load_trained
from training.model.standin import standin_path
from training.run_config import saved_config
from training.trainer.early_stopping import after_evaluation, should_stop

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


# A barely trained stand-in, evaluated after steps 1 and 2: 4 eval samples in 2 eval_loss batches,
# all 4 transcribed. Untrained, it never ends a transcription by itself.
YOUNG = ("max_steps=2", "eval_steps=1", "save_steps=1000", "logging_steps=1", "eval_subset=4",
         "eval_generate_samples=4", "per_device_eval_batch_size=2", "worst_samples=4", "max_new_tokens=256")


@pytest.fixture(scope="module")
def young(module_mktemp):
    """The YOUNG run as configured by default: eval set prepared once, transcriptions bounded (auto)."""
    out = module_mktemp("young") / "run"
    result = train_here(out, *YOUNG)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout


def evaluations(out) -> list[dict]:
    return [e for e in read_events(str(out / "metrics.jsonl")) if "eval_loss" in e]


def worst_written(out, step: int) -> list[dict]:
    return [json.loads(line) for line in (out / "worst_samples" / f"step-{step}.jsonl").read_text().splitlines()]


def test_the_eval_set_prepared_once_scores_what_reading_it_afresh_scores(young, tmp_path):
    out, stdout = young
    assert "eval set: 4 samples read and preprocessed once" in stdout
    again = train_here(tmp_path / "run", *YOUNG, "eval_cache_mb=0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "eval_cache_mb=0, so its samples are read and preprocessed at every evaluation" in again.stdout
    prepared, afresh = evaluations(out), evaluations(tmp_path / "run")
    assert [e["step"] for e in prepared] == [1, 2]
    for with_cache, without in zip(prepared, afresh, strict=True):
        metrics = ("step", "eval_loss", "eval_cer", "eval_wer", "eval_exact_match")
        assert {k: with_cache[k] for k in metrics} == {k: without[k] for k in metrics}
    for step in (1, 2):
        assert worst_written(out, step) == worst_written(tmp_path / "run", step)


def test_an_untrained_models_transcriptions_stop_at_the_auto_bound(young, tmp_path):
    out, stdout = young
    tokenizer = AutoProcessor.from_pretrained(standin_path()).tokenizer
    longest = max(len(tokenizer(SyntheticSplit("validation", 4)[i]["text"] + END_OF_TURN,
                                add_special_tokens=False)["input_ids"]) for i in range(4))
    bound = math.ceil(1.25 * longest) + 8
    assert f"transcribing 4 eval samples at step 1, at most {bound} tokens each" in stdout
    unbounded = train_here(tmp_path / "run", *YOUNG, "max_steps=1", "eval_max_new_tokens=256")
    assert unbounded.returncode == 0, unbounded.stdout + unbounded.stderr
    assert "at most 256 tokens each" in unbounded.stdout
    # Greedy decoding: the bounded transcription is where the unbounded one was at the bound.
    cut = {w["key"]: w["prediction"] for w in worst_written(out, 1)}
    whole = {w["key"]: w["prediction"] for w in worst_written(tmp_path / "run", 1)}
    assert cut.keys() == whole.keys()
    assert all(whole[key].startswith(cut[key]) for key in cut)
    assert all(len(tokenizer(cut[key])["input_ids"]) < len(tokenizer(whole[key])["input_ids"]) for key in cut)
    # the eval_loss pass is not affected by the bound
    assert evaluations(out)[0]["eval_loss"] == evaluations(tmp_path / "run")[0]["eval_loss"]
