"""Shared fixtures: an offline environment, one stand-in build per session, the CLI as users run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
QUICK_VAL = "configs/experiments/quick_val.py"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory):
    """Every test and every CLI it starts runs offline, with one shared stand-in cache."""
    cache = os.environ.get("WELL_LOG_CACHE") or str(tmp_path_factory.mktemp("standin-cache"))
    saved = dict(os.environ)
    os.environ.update(OFFLINE_ENV, WELL_LOG_CACHE=cache)
    for secret in ("WANDB_API_KEY", "HF_TOKEN", "GIT_TOKEN", "RUNPOD_API_KEY", "VOLUME_PATH", "GPU_HOURLY_RATE"):
        os.environ.pop(secret, None)
    yield cache
    os.environ.clear()
    os.environ.update(saved)


def run_cli(args: list[str], env: dict | None = None, timeout: float = 300, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `python <args>` from the repository root as a user would, capturing its output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def train(output_dir: Path, *overrides: str, config: str = QUICK_VAL, extra: tuple[str, ...] = (),
          env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    args = ["training/train.py", "--config", config, "--set", f"output_dir={output_dir}"]
    for override in overrides:
        args += ["--set", override]
    return run_cli(args + list(extra), env=env, timeout=timeout)
