"""The torch build for the host's NVIDIA driver: scripts/install.sh's choice with a fake `nvidia-smi`
on PATH, and preflight saying why CUDA is unusable when the build and the driver do not match."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_preflight import table

from configs.base import TrainingConfig
from conftest import REPO, train
from training.cuda_build import CUDA12_BUILD, PYPI_TORCH_CUDA, driver_supports, minimum_driver
from training.preflight import Cuda, Gpu, gpu_verdict, unusable_cuda


def fake_nvidia_smi(directory: Path, driver: str | None) -> dict:
    """An environment whose PATH starts with a `nvidia-smi` reporting `driver` (None: no NVIDIA driver,
    nvidia-smi present but failing as it does without one)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = f"#!/bin/sh\necho {driver}\n" if driver else \
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9\n"
    (directory / "nvidia-smi").write_text(script)
    (directory / "nvidia-smi").chmod(0o755)
    return {"PATH": f"{directory}{os.pathsep}{os.environ['PATH']}"}


def torch_choice(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "install.sh"), "torch-choice"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


CU128 = f"{CUDA12_BUILD[1]} {CUDA12_BUILD[2]}"


@pytest.mark.parametrize("driver, code, choice, words", [
    ("580.82.07", 0, "PyPI", "runs CUDA 13.0: PyPI's torch"),
    ("580.65.06", 0, "PyPI", "PyPI's torch"),
    ("575.57.08", 0, CU128, "older than 580.65.06"),
    ("550.54.15", 0, CU128, "the CUDA 12.8 build"),
    ("535.183.01", 0, CU128, "the CUDA 12.8 build"),
    ("525.60.13", 0, CU128, "the CUDA 12.8 build"),
    ("470.82.01", 2, "", "older than 525.60.13, the oldest that any build"),
    ("n/a", 2, "", "cannot be read"),
    (None, 0, "PyPI", "no NVIDIA driver found"),
])
def test_install_picks_the_torch_build_for_the_driver(tmp_path, driver, code, choice, words):
    result = torch_choice(fake_nvidia_smi(tmp_path / "bin", driver))
    assert result.returncode == code, result.stderr
    assert result.stdout.strip() == choice and words in result.stderr


def test_the_pinned_wheel_is_the_cuda_build_the_table_assumes():
    import torch

    assert torch.version.cuda == PYPI_TORCH_CUDA
    assert minimum_driver("13.0") == "580.65.06" and minimum_driver("12.8") == "525.60.13"
    assert driver_supports("580.65.06", "13.0") and not driver_supports("570.172.08", "13.0")


def test_preflight_says_why_cuda_is_unusable(tmp_path):
    # A host with driver 550 and the PyPI (CUDA 13.0) torch: is_available() is False, and preflight says why.
    result = train(tmp_path / "run", "model_name=unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit",
                   extra=("--preflight-only",), env=fake_nvidia_smi(tmp_path / "bin", "550.54.15"))
    assert result.returncode == 2 and table(result.stdout)["gpu"] == "FAIL", result.stdout + result.stderr
    assert "NVIDIA driver 550.54.15 found, but torch is built for CUDA 13.0 (torch.version.cuda), which needs " \
           "driver >= 580.65.06" in result.stderr
    assert "bash scripts/install.sh gpu" in result.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("cuda, words", [
    (Cuda(None, "13.0"), None),                                  # no NVIDIA driver: a CPU machine
    (Cuda("550.54.15", None), "is a CPU build"),
    (Cuda("570.172.08", "13.0"), "needs driver >= 580.65.06"),
    (Cuda("580.82.07", "13.0", "CUDA error: no CUDA-capable device is detected"),
     "yet torch cannot use the GPU (CUDA error: no CUDA-capable device is detected)"),
])
def test_unusable_cuda_names_the_reason(cuda, words):
    why = unusable_cuda(cuda)
    assert (why is None) if words is None else (words in why)


def test_the_gpu_row_shows_the_driver_and_torchs_cuda():
    gpu = Gpu("NVIDIA H100 80GB HBM3", free=79 * 2**30, total=80 * 2**30)
    check = gpu_verdict(TrainingConfig(), "unsloth", gpu, Cuda("580.82.07", "13.0"))
    assert check.ok and "NVIDIA H100 80GB HBM3 (driver 580.82.07, torch CUDA 13.0)" in check.detail
