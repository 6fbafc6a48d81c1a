"""evaluate.py end to end: the real CLI scores a trained adapter; bad --model input exits 2."""

from __future__ import annotations

import json

import jiwer
import pytest

from conftest import run_cli, train_here


@pytest.fixture(scope="module")
def trained(module_mktemp):
    out = module_mktemp("evaluate") / "run"
    result = train_here(out, "max_steps=4", "eval_steps=100", "save_steps=2", "eval_generate_samples=0")
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.mark.parametrize("model", ["final", "checkpoint-4"])
def test_evaluate_scores_an_adapter_and_writes_every_transcription(trained, tmp_path, model):
    report_path = tmp_path / "report.json"
    result = run_cli(["training/evaluate.py", "--model", str(trained / model), "--limit", "4",
                      "--batch-size", "3", "--output", str(report_path)])
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["split"] == "test" and report["samples"] == 4 and len(report["results"]) == 4
    targets = [r["target"] for r in report["results"]]
    predictions = [r["prediction"] for r in report["results"]]
    assert all(targets), "the synthetic test split has a transcription for every sample"
    # The reported figures are the transcriptions' own, not numbers from somewhere else.
    assert report["cer"] == pytest.approx(jiwer.cer(targets, predictions))
    assert report["exact_match"] == sum(t == p for t, p in zip(targets, predictions)) / 4
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert table[0] == "| metric | value |" and f"| CER | {report['cer']:.4f} |" in table


@pytest.mark.parametrize("args, words", [
    (["--model", "/nonexistent/final"], "--model /nonexistent/final: no such directory"),
    (["--model", "{run}", "--limit", "0"], "--limit must be -1 or >= 1"),
    (["--model", "{run}/final", "--config", "configs/experiments/nope.py"], "no such file"),
])
def test_evaluate_bad_input_exits_2_with_one_line(trained, args, words):
    args = [a.format(run=trained) for a in args]
    result = run_cli(["training/evaluate.py", *args])
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and words in errors[0], result.stderr


def test_evaluate_refuses_a_directory_without_an_adapter(trained):
    result = run_cli(["training/evaluate.py", "--model", str(trained)])  # the run, not final/
    assert result.returncode == 2 and "no adapter_config.json" in result.stderr, result.stderr
