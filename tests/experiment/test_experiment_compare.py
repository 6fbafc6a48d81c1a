"""`compare` on three real quick runs (trained once for this module), its Markdown table and plot, and
reading runs whose files or keys are missing, torn or from a newer trainer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from experiment_repo import experiment, git, make_repo, tree_files

from conftest import QUICK_VAL, REPO
from training.experiment.__main__ import main
from training.experiment.compare import pareto_front

RUNS = {"lr-2e-3": "2e-3", "lr-5e-3": "5e-3", "lr-1e-2": "1e-2"}
# quick_val, smaller still: three evaluations each, for lines worth plotting.
SMALL = ["max_steps=6", "eval_steps=2", "save_steps=3", "train_subset=24", "eval_subset=4"]


@pytest.fixture(scope="module")
def runs_root(module_mktemp, offline_env):
    """Three finished quick_val runs that differ in learning_rate, trained side by side."""
    root = module_mktemp("compare") / "checkpoints"
    jobs = {}
    for name, lr in RUNS.items():
        overrides = [f"output_dir={root / name}", f"experiment_name={name}", f"learning_rate={lr}", *SMALL]
        args = [sys.executable, "training/train.py", "--config", QUICK_VAL]
        args += [part for override in overrides for part in ("--set", override)]
        # One thread each (conftest: OMP_NUM_THREADS=1): three runs share two cores without oversubscribing them.
        jobs[name] = subprocess.Popen(args, cwd=REPO, env=os.environ,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, job in jobs.items():
        output, _ = job.communicate(timeout=400)
        assert job.returncode == 0, f"{name}: {output[-3000:]}"
    return root


def best_eval_loss(directory) -> tuple[float, int]:
    events = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    return min((e["eval_loss"], e["step"]) for e in events if "eval_loss" in e)


def test_compare_prints_one_row_per_run_best_first_and_plots(runs_root, tmp_path):
    repo = make_repo(tmp_path, tree_files())
    git(repo, "branch", "lr-5e-3")  # a branch here: its head stands in where a run recorded no commit
    plot = tmp_path / "plots" / "compare.png"
    result = experiment(repo, "compare", "--outputs", str(runs_root), "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    blank = result.stdout.splitlines().index("")
    shared, lines = " ".join(result.stdout.splitlines()[:blank]), result.stdout.splitlines()[blank + 1:]
    assert shared.startswith("Shared by every run (vs configs/base.py): model_name=standin:qwen3-vl-mini ")
    assert " max_steps=6 " in shared and "learning_rate" not in shared
    header, rows = lines[0].split(), [line.split() for line in lines[1:4]]
    assert header == ["experiment", "commit", "changes", "eval_loss", "CER", "WER", "steps", "cost", "status"]

    expected = sorted((best_eval_loss(runs_root / name), name) for name in RUNS)
    assert [row[0] for row in rows] == [name for _, name in expected]
    for row, ((loss, step), name) in zip(rows, expected):
        events = [json.loads(line) for line in (runs_root / name / "metrics.jsonl").read_text().splitlines()]
        recorded = json.loads((runs_root / name / "run_status.json").read_text())["git_commit"]
        commit = recorded[:7] if recorded else f"{git(repo, 'rev-parse', 'lr-5e-3')[:7]}*" if name == "lr-5e-3" else "-"
        cer = min(e["eval_cer"] for e in events if "eval_cer" in e)
        wer = min(e["eval_wer"] for e in events if "eval_wer" in e)
        assert row == [name, commit, f"learning_rate={float(RUNS[name]):g}", f"{loss:.4f}", f"@{step}", f"{cer:.3f}",
                       f"{wer:.3f}", "6/6", "$0.00", "finished"]
    assert lines[4:] == [f"plot: {plot}"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000


@pytest.mark.parametrize("points, front", [
    ({"a": (1.0, 0.10), "b": (2.0, 0.05), "c": (3.0, 0.20)}, {"a", "b"}),    # c: dearer and worse than both
    ({"a": (1.0, 0.10), "b": (1.0, 0.10)}, {"a", "b"}),                      # equal runs both stay
    ({"a": (1.0, 0.10), "b": (1.0, 0.12), "c": (0.5, 0.30)}, {"a", "c"}),    # b: same cost, worse CER
    ({"only": (0.0, 0.5)}, {"only"}),
    ({}, set()),
])
def test_pareto_front_of_cost_and_cer(points, front):
    assert pareto_front(points) == front


def test_compare_markdown_from_the_volume_outside_a_repository(runs_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOLUME_PATH", str(runs_root.parent))  # the default root: $VOLUME_PATH/checkpoints
    assert main(["compare", "--markdown"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert table[0] == "| experiment | commit | changes | eval_loss | CER | WER | steps | cost | status |"
    assert table[1] == "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    assert len(table) == 5 and all(line.count(" | ") == 8 for line in table)


def test_compare_reads_partial_and_newer_runs(runs_root, tmp_path, capsys):
    root = tmp_path / "checkpoints"
    shutil.copytree(runs_root / "lr-5e-3", root / "lr-5e-3")
    # Preempted, from a trainer that records cost and commit; no metrics or config yet.
    (root / "spot-run").mkdir(parents=True)
    (root / "spot-run" / "run_status.json").write_text(json.dumps(
        {"status": "preempted", "exit_code": 143, "step": 40, "max_steps": 500, "cost_usd": 1.237,
         "git_commit": "0123456789abcdef", "wandb_url": "https://wandb.ai/x/y/runs/z"}))
    # Metrics with cost and CER/WER, a torn last line (killed mid-write), a config from a newer trainer.
    (root / "with-cer").mkdir()
    (root / "with-cer" / "metrics.jsonl").write_text("\n".join([
        json.dumps({"step": 50, "eval_loss": 1.5, "eval_cer": 0.30, "eval_wer": 0.50, "cost_usd": 0.10}),
        json.dumps({"step": 100, "eval_loss": 1.2, "eval_cer": 0.21, "eval_wer": 0.40, "cost_usd": 0.20}),
        json.dumps({"step": 150, "eval_loss": 1.3, "eval_cer": 0.25, "cost_usd": 0.30}),
        '{"step": 160, "loss": 1.',
    ]))
    (root / "with-cer" / "training_config.json").write_text(json.dumps({"r": 32, "a_field_from_later": 1}))
    (root / "empty").mkdir()
    (root / "junk.txt").write_text("not a run")

    assert main(["compare", "--outputs", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    rows = {line.split()[0]: line.split() for line in lines}
    assert set(rows) == {"lr-5e-3", "spot-run", "with-cer"}
    assert rows["with-cer"] == ["with-cer", "-", "r=32", "1.2000", "@100", "0.210", "0.400", "150", "$0.30", "-"]
    # No field is shared by all three runs, so each row lists every change from the defaults.
    assert " model_name=standin:qwen3-vl-mini r=32 " in next(x for x in lines if x.startswith("lr-5e-3"))
    assert rows["spot-run"] == ["spot-run", "0123456", "-", "-", "-", "-", "40/500", "$1.24", "preempted"]
    assert rows["lr-5e-3"][-2:] == ["$0.00", "finished"]  # a CPU run records its cost: nothing


def test_compare_without_runs(tmp_path, capsys):
    assert main(["compare", "--outputs", str(tmp_path / "none")]) == 2
    assert "error: no runs in" in capsys.readouterr().err
