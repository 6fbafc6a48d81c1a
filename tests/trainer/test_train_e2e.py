"""The real train.py on the stand-in model and synthetic data, into temp dirs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import QUICK_VAL, run_cli, train, train_here
from training.metrics_log import read_events


@pytest.fixture(scope="module")
def quick_run(module_mktemp):
    out = module_mktemp("quick") / "run"
    result = train(out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def losses(out) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in read_events(str(out / "metrics.jsonl")) if "loss" in e]


def test_quick_val_finishes_and_writes_outputs(quick_run):
    out, result = quick_run
    assert [step for step, _ in losses(out)] == list(range(1, 11))
    evals = [e for e in read_events(str(out / "metrics.jsonl")) if "eval_loss" in e]
    assert [e["step"] for e in evals] == [5, 10]
    final = out / "final"
    for name in ("adapter_model.safetensors", "adapter_config.json", "processor_config.json",
                 "tokenizer.json", "chat_template.jinja", "training_config.json"):
        assert (final / name).exists(), name
    assert not list(final.glob("model*.safetensors")), "the frozen base must not be saved"
    assert "step 10/10" in result.stdout and "final adapter" in result.stdout
    assert "base weights float32" in result.stdout  # read from the loaded model, not from load_in_4bit


def test_training_changes_the_adapter(quick_run):
    out, _ = quick_run
    weights = load_file(str(out / "final" / "adapter_model.safetensors"))
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b), "LoRA B starts at zero and must move"
    loss = losses(out)
    assert loss[-1][1] < loss[0][1] - 1.0


def test_loss_curve_is_deterministic(quick_run, tmp_path, monkeypatch):
    out, _ = quick_run
    again = tmp_path / "again"
    # A fresh stand-in cache: building the model in-process must not change the run either.
    monkeypatch.setenv("WELL_LOG_CACHE", str(tmp_path / "cache"))
    assert train_here(again).returncode == 0
    assert losses(again) == losses(out)
    first = load_file(str(out / "final" / "adapter_model.safetensors"))
    second = load_file(str(again / "final" / "adapter_model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_different_seed_gives_a_different_curve(quick_run, tmp_path):
    out, _ = quick_run
    other = tmp_path / "seed"
    assert train_here(other, "seed=7", "max_steps=3", "eval_steps=100", "save_steps=100").returncode == 0
    assert losses(other) != losses(out)[:3]


def test_cpu_backend_never_imports_unsloth(tmp_path):
    code = (
        "import sys; sys.path.insert(0, '.');"
        "from training.train import main;"
        f"code = main(['--config', '{QUICK_VAL}', '--set', 'output_dir={tmp_path / 'run'}', '--set', 'max_steps=1',"
        " '--set', 'eval_steps=100', '--set', 'save_steps=100']);"
        "assert code == 0, code;"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('unsloth', 'unsloth_zoo', 'trl'));"
        "print('IMPORTED', loaded)"
    )
    result = run_cli(["-c", code])
    assert result.returncode == 0, result.stderr
    assert "IMPORTED []" in result.stdout


def test_saved_config_records_the_resolved_run(quick_run):
    out, _ = quick_run
    saved = json.loads((out / "final" / "training_config.json").read_text())
    assert saved["output_dir"] == str(out) and saved["max_steps"] == 10
    assert saved["experiment_name"]
