"""Tracking and cost, end to end on the stand-in: W&B offline run files, the same run across a
resume, the budget cap, early stopping across a resume, and no secret in anything a run writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from wandb_records import history, of_type

from conftest import train, train_here, wait_for
from training.checkpointing import checkpoints
from training.checkpointing.state import HarnessState
from training.metrics_log import read_events
from training.run_status import read_status

SHORT = ("max_steps=4", "eval_steps=2", "save_steps=2", "logging_steps=1", "eval_generate_samples=4",
         "max_new_tokens=24", "save_every_minutes=0")


def run_files(output_dir: Path) -> list[Path]:
    files = sorted(output_dir.glob("wandb/offline-run-*/run-*.wandb"))
    for file in files:  # wandb's writer process may still be flushing the run's last records
        wait_for(lambda f=file: of_type(f, "exit"), timeout=30, poll=0.2)
    return files


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")


def test_wandb_run_holds_cost_for_every_logged_step(tmp_path, offline):
    out = tmp_path / "run"
    result = train_here(out, *SHORT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upload later with `wandb sync" in result.stdout
    [run_file] = run_files(out)
    rows = history(run_file)
    logged_steps = sorted({e["step"] for e in read_events(str(out / "metrics.jsonl"))})
    metric_rows = [r for r in rows if "train_loss" in r or "eval_loss" in r]
    assert sorted({r["train/global_step"] for r in metric_rows}) == logged_steps
    assert all("cost_usd" in r for r in metric_rows)
    assert {r["train/global_step"] for r in rows if "eval_cer" in r} == {2, 4}
    tables = [r for r in rows if "eval/worst_samples/_type" in r]
    assert [r["train/global_step"] for r in tables] == [2, 4] and tables[0]["eval/worst_samples/nrows"] == 4
    # the Trainer's end-of-run mean loss must not land on the train_loss curve
    assert [r for r in rows if "train_runtime" in r][0].get("train_loss") is None
    run = of_type(run_file, "run")[0]
    tracked = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert tracked["git_commit"] and "torch" in tracked["versions"] and tracked["r"] == 32
    assert run.display_name == tracked["experiment_name"] and run.project == "well-log-ocr"


def test_resumed_run_writes_to_the_same_wandb_run(tmp_path, offline):
    out = tmp_path / "run"
    assert train_here(out, *SHORT).returncode == 0
    first_id = HarnessState.load(str(out / "checkpoint-4")).wandb_run_id
    assert train_here(out, *SHORT, "max_steps=6", extra=("--resume", "auto")).returncode == 0
    files = run_files(out)
    assert len(files) == 2 and all(f.name == f"run-{first_id}.wandb" for f in files)
    resumed_steps = {r["train/global_step"] for r in history(files[-1]) if "train_loss" in r}
    assert resumed_steps == {5, 6}
    assert HarnessState.load(str(out / "checkpoint-6")).wandb_run_id == first_id


def test_budget_cap_stops_with_a_checkpoint_and_exit_3(tmp_path, offline, monkeypatch):
    monkeypatch.setenv("GPU_HOURLY_RATE", "36000")  # 10 USD a second
    out = tmp_path / "run"
    result = train_here(out, "max_steps=50", "budget_cap=15", "eval_steps=100", "save_steps=100", "logging_steps=1")
    assert result.returncode == 3, result.stdout + result.stderr
    status = read_status(str(out))
    assert status["status"] == "budget_stopped" and status["cost_usd"] >= 15
    complete, _ = checkpoints.scan(str(out))
    assert complete and complete[-1].step == status["step"] < 50
    assert "passed 90% of budget_cap" in result.stdout
    [run_file] = run_files(out)
    assert [a.title for a in of_type(run_file, "alert")] == ["Budget 90% used"]
    costs = [e["cost_usd"] for e in read_events(str(out / "metrics.jsonl")) if "loss" in e]
    assert costs == sorted(costs) and costs[-1] > 0
    # resuming without raising the cap stops before loading anything
    again = train_here(out, "max_steps=50", "budget_cap=15", extra=("--resume", "auto"))
    assert again.returncode == 3 and "already spent" in again.stderr
    # warn-only finishes, and the cost keeps adding up across the resume
    more = status["step"] + 2  # whatever step the cap stopped at, there is more to train
    raised = train_here(out, f"max_steps={more}", "budget_cap=15", "budget_action=warn", "eval_steps=100",
                        "save_steps=100", extra=("--resume", "auto"))
    assert raised.returncode == 0, raised.stdout + raised.stderr
    assert read_status(str(out))["status"] == "finished" and read_status(str(out))["step"] == more
    assert "training on (budget_action=warn)" in raised.stdout  # the log is the only place that says so
    assert read_status(str(out))["cost_usd"] > status["cost_usd"]


def test_early_stopping_fires_on_a_plateau_and_keeps_patience_across_resume(tmp_path):
    plateau = ("learning_rate=1e-12", "eval_steps=1", "save_steps=1", "logging_steps=1",
               "early_stopping_patience=2", "early_stopping_min_delta=0.01", "eval_generate_samples=0",
               "save_every_minutes=0")
    whole = tmp_path / "whole"
    result = train_here(whole, *plateau, "max_steps=10")
    assert result.returncode == 0 and "early stopping at step 3" in result.stdout
    assert read_status(str(whole))["status"] == "early_stopped" and (whole / "final").is_dir()

    split = tmp_path / "split"
    assert train_here(split, *plateau, "max_steps=2").returncode == 0
    assert HarnessState.load(str(split / "checkpoint-2")).evals_without_improvement == 1
    resumed = train_here(split, *plateau, "max_steps=10", extra=("--resume", "auto"))
    # with the count kept, the next flat evaluation (step 3) is the second: a fresh count would run to step 5
    assert "early stopping at step 3" in resumed.stdout, resumed.stdout


def test_no_secret_in_anything_a_run_writes(tmp_path):
    secrets = {"WANDB_API_KEY": "wandb-secret-5f1c9a7e0d2b4c6a8e0f1a3b5c7d9e1f2a4b6c8d",
               "HF_TOKEN": "hf_SecretTokenValue0123456789abcdefXYZ",
               "GIT_TOKEN": "ghp_SecretGitToken0123456789abcdefghij",
               "RUNPOD_API_KEY": "rpa_SecretRunpodKey0123456789ABCDEFGH"}
    out = tmp_path / "run"
    result = train(out, *SHORT, env={**secrets, "WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stdout + result.stderr
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written) and any(p.name == "harness_state.json" for p in written)
    for path in written:
        data = path.read_bytes()
        for name, value in secrets.items():
            assert value.encode() not in data, f"{name} found in {path}"
    for name, value in secrets.items():
        assert value not in result.stdout + result.stderr, f"{name} printed"
    assert os.environ.get("WANDB_API_KEY") is None


@pytest.mark.parametrize("report, environ, mode", [
    (False, {"WANDB_API_KEY": "k"}, "disabled"),
    (True, {"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}, "disabled"),
    (True, {"WANDB_MODE": "offline", "WANDB_API_KEY": "k"}, "offline"),
    (True, {"WANDB_MODE": "dryrun", "WANDB_API_KEY": "k"}, "offline"),  # wandb's older name, as preflight reads it
    (True, {"WANDB_API_KEY": "k"}, "online"),
])
def test_wandb_mode(report, environ, mode):
    from training.wandb_env import wandb_mode

    assert wandb_mode(report, environ)[0] == mode
