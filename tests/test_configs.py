"""Configs: every experiment file loads and validates; overrides are strict and typed."""

from __future__ import annotations

import dataclasses
import os
import sys

import pytest

from configs.base import FIELD_TYPES, ConfigError, TrainingConfig
from configs.loader import EXPERIMENTS_DIR, REPO_ROOT, apply_overrides, convert, load_config, parse_overrides
from training.run_config import resolve

EXPERIMENT_FILES = sorted(p for p in EXPERIMENTS_DIR.glob("*.py") if not p.name.startswith("_"))
PUBLIC_FIELDS = (
    "model_name load_in_4bit r lora_alpha lora_dropout max_steps learning_rate per_device_train_batch_size "
    "gradient_accumulation_steps dataset_name train_subset eval_subset wandb_project report_to_wandb "
    "experiment_name output_dir seed logging_steps eval_steps save_steps keep_best keep_recent "
    "early_stopping_patience budget_cap gpu_hourly_rate"
).split()


def test_experiment_files_exist():
    names = {p.stem for p in EXPERIMENT_FILES}
    assert {"quick_val", "qwen3_qlora_r16"} <= names


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.stem)
def test_every_experiment_loads_and_validates(path):
    config = load_config(path)
    assert isinstance(config, TrainingConfig)
    # Constructing again re-runs validation on exactly these values.
    assert TrainingConfig(**dataclasses.asdict(config)) == config


def test_public_fields_and_seed_defaults():
    defaults = TrainingConfig()
    assert set(PUBLIC_FIELDS) <= set(FIELD_TYPES)
    assert (defaults.r, defaults.lora_alpha, defaults.lora_dropout) == (16, 16, 0)
    assert (defaults.max_steps, defaults.learning_rate) == (500, 2e-4)
    assert (defaults.per_device_train_batch_size, defaults.gradient_accumulation_steps) == (2, 4)
    assert defaults.dataset_name == "wrath/well-log-headers-ocr"
    assert defaults.wandb_project == "well-log-ocr"
    assert (defaults.keep_best, defaults.keep_recent, defaults.budget_cap) == (5, 5, 10.0)
    assert (defaults.train_subset, defaults.eval_subset) == (-1, -1)


def test_quick_val_is_small_and_offline():
    config = load_config("configs/experiments/quick_val.py")
    assert config.max_steps == 10 and config.train_subset == 100
    assert config.model_name.startswith("standin:") and config.dataset_name.startswith("synthetic:")
    assert config.save_steps < config.max_steps and config.eval_steps < config.max_steps


def test_other_files_can_import_and_replace_quick_val():
    from configs.experiments.quick_val import config as quick_val

    derived = dataclasses.replace(quick_val, r=8)
    assert derived.r == 8 and derived.max_steps == quick_val.max_steps


@pytest.mark.parametrize("field, raw, expected", [
    ("learning_rate", "1e-4", 1e-4),
    ("learning_rate", "3", 3.0),
    ("max_steps", "800", 800),
    ("report_to_wandb", "false", False),
    ("report_to_wandb", "Yes", True),
    ("load_in_4bit", "0", False),
    ("experiment_name", "lr-sweep", "lr-sweep"),
])
def test_overrides_convert_to_field_type(field, raw, expected):
    value = convert(field, raw)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("item, message", [
    ("lerning_rate=0.1", "unknown field 'lerning_rate' (did you mean 'learning_rate'?)"),
    ("max_step=3", "did you mean 'max_steps'?"),
    ("zzz=1", "see configs/base.py"),
    ("r=abc", "r=abc: must be an integer"),
    ("report_to_wandb=maybe", "must be true or false"),
    ("learning_rate=fast", "must be a number"),
    ("novalue", "expected FIELD=VALUE"),
])
def test_bad_overrides_are_named(item, message):
    _, problems = parse_overrides([item])
    assert len(problems) == 1 and message in problems[0]


def test_all_problems_reported_at_once():
    config = load_config("configs/experiments/quick_val.py")
    with pytest.raises(ConfigError) as caught:
        apply_overrides(config, ["r=abc", "learning_rate=-1", "max_steps=0", "nope=1"])
    problems = caught.value.problems
    assert len(problems) == 4
    assert any("learning_rate=-1.0: must be > 0" in p for p in problems)
    assert any("max_steps=0: must be >= 1" in p for p in problems)


@pytest.mark.parametrize("values, message", [
    ({"learning_rate": -1.0}, "learning_rate=-1.0: must be > 0"),
    ({"lora_dropout": 1.5}, "lora_dropout=1.5: must be in [0, 1)"),
    ({"train_subset": 0}, "train_subset=0: must be -1 (all) or >= 1"),
    ({"backend": "jax"}, "backend='jax': must be one of"),
    ({"r": "16"}, "r='16': must be an integer"),
    ({"keep_best": -1}, "keep_best=-1: must be >= 0"),
    ({"budget_cap": float("nan")}, "budget_cap=nan"),
    ({"experiment_name": "has space"}, "experiment_name='has space'"),
])
def test_validation_names_field_value_and_rule(values, message):
    with pytest.raises(ConfigError) as caught:
        TrainingConfig(**values)
    assert any(message in p for p in caught.value.problems)


BOUND_RULE = "must be -1 (auto, from the longest reference) or a token count from 1 to max_new_tokens="


@pytest.mark.parametrize("values, problem", [
    ({"eval_max_new_tokens": 0}, f"eval_max_new_tokens=0: {BOUND_RULE}256"),
    ({"eval_max_new_tokens": 300}, f"eval_max_new_tokens=300: {BOUND_RULE}256"),
    ({"eval_max_new_tokens": 100, "max_new_tokens": 80}, f"eval_max_new_tokens=100: {BOUND_RULE}80"),
    ({"eval_cache_mb": -1}, "eval_cache_mb=-1: must be >= 0 (MB of prepared eval samples per process; 0 = none)"),
])
def test_evaluation_bounds_are_one_problem_each(values, problem):
    with pytest.raises(ConfigError) as caught:
        TrainingConfig(**values)
    assert caught.value.problems == [problem]


def test_evaluation_bounds_accept_auto_and_the_ceiling():
    assert TrainingConfig().eval_max_new_tokens == -1 and TrainingConfig().eval_cache_mb == 4096
    assert TrainingConfig(eval_max_new_tokens=256, eval_cache_mb=0).eval_max_new_tokens == 256


def test_typo_inside_an_experiment_file_suggests_the_field(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text("import dataclasses\nfrom configs.experiments.quick_val import config as parent\n"
                    "config = dataclasses.replace(parent, lerning_rate=1e-3)\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path}: unknown field 'lerning_rate' (did you mean 'learning_rate'?)"]


def test_file_without_config_and_syntax_errors(tmp_path):
    (tmp_path / "empty.py").write_text("x = 1\n")
    (tmp_path / "broken.py").write_text("config = (\n")
    with pytest.raises(ConfigError, match="must define a module-level `config"):
        load_config(tmp_path / "empty.py")
    with pytest.raises(ConfigError, match=r"broken.py:1: syntax error"):
        load_config(tmp_path / "broken.py")
    with pytest.raises(ConfigError, match="no such file .*quick_val"):
        load_config(tmp_path / "missing.py")


def test_resolve_fills_name_and_output_dir(tmp_path):
    config = load_config("configs/experiments/quick_val.py", ["experiment_name=exp-a"])
    resolved = resolve(config, environ={"VOLUME_PATH": str(tmp_path)})
    assert resolved.output_dir == str(tmp_path / "checkpoints" / "exp-a")
    local = resolve(config, environ={})
    assert local.output_dir.endswith("outputs/checkpoints/exp-a")
    explicit = resolve(dataclasses.replace(config, output_dir=str(tmp_path / "x")), environ={})
    assert explicit.output_dir == str(tmp_path / "x")


def test_on_a_pod_a_relative_output_dir_is_on_the_volume(tmp_path):
    config = load_config("configs/experiments/quick_val.py", ["experiment_name=exp-a", "output_dir=runs/x"])
    assert resolve(config, environ={"VOLUME_PATH": str(tmp_path)}).output_dir == str(tmp_path / "runs" / "x")
    assert resolve(config, environ={}).output_dir == os.path.abspath("runs/x")


def test_on_a_pod_an_output_dir_inside_the_clone_is_refused():
    # The clone setup_pod.sh resets at each restart: here, this checkout, on a "volume" above it.
    config = load_config("configs/experiments/quick_val.py", [f"output_dir={REPO_ROOT / 'runs' / 'x'}"])
    with pytest.raises(ConfigError, match=r"output_dir='.*runs/x': inside the code checkout"):
        resolve(config, environ={"VOLUME_PATH": str(REPO_ROOT.parent)})
    assert resolve(config, environ={}).output_dir == str(REPO_ROOT / "runs" / "x")


def test_loading_a_config_leaves_the_interpreter_as_it_was(monkeypatch):
    from configs.loader import REPO_ROOT

    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(REPO_ROOT)])
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    before = list(sys.path)
    assert load_config("configs/experiments/qwen3_qlora_r16.py").r == 16
    assert sys.path == before and sys.dont_write_bytecode is False


def test_the_readme_says_that_experiment_files_are_code():
    # They are Python, executed by every command that reads them: users must know before running a branch.
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("**Experiment files are code.**")
    paragraph = text[start:text.index("\n\n", start)]
    for runner in ("train.py", "`new`", "`sweep`", "`launch`", "scripts/setup_pod.sh"):
        assert runner in paragraph, runner
