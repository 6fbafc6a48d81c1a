"""The torch build for the host's NVIDIA driver: scripts/install.sh's choice with a fake `nvidia-smi`
on PATH, and preflight saying why CUDA is unusable when the build and the driver do not match."""

from __future__ import annotations

import functools
import http.server
import os
import platform
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote

import pytest
from test_preflight import table

from configs.base import TrainingConfig
from conftest import REPO, train
from training.pod.cuda_build import CUDA12_BUILD, PYPI_TORCH_CUDA, driver_supports, minimum_driver
from training.preflight import Cuda, Gpu, gpu_verdict, unusable_cuda


def fake_nvidia_smi(directory: Path, driver: str | None, capability: str | None = None) -> dict:
    """An environment whose PATH starts with a `nvidia-smi` reporting `driver` and, when given, the
    GPU's compute `capability` (None: no NVIDIA driver, nvidia-smi present but failing as it does
    without one)."""
    directory.mkdir(parents=True, exist_ok=True)
    answer = f"{driver}, {capability}" if capability else driver
    script = f"#!/bin/sh\necho '{answer}'\n" if driver else \
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9\n"
    (directory / "nvidia-smi").write_text(script)
    (directory / "nvidia-smi").chmod(0o755)
    return {"PATH": f"{directory}{os.pathsep}{os.environ['PATH']}"}


def torch_choice(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "install.sh"), "torch-choice"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def torch_index(module_mktemp):
    """A PEP 503 index on 127.0.0.1 laid out as PyTorch's (PYTORCH_INDEX/cu126/torch/): it serves
    the pinned torch for this Python, and a torchvision for another Python only."""
    root = module_mktemp("whl")
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = {"torch": f"torch-2.14.1%2Bcu126-{tag}-{tag}-manylinux_2_28_{platform.machine()}.whl",
              "torchvision": f"torchvision-0.29.1%2Bcu126-cp39-cp39-manylinux_2_28_{platform.machine()}.whl"}
    for name, wheel in wheels.items():
        (root / "cu126" / name).mkdir(parents=True)
        (root / "cu126" / name / "index.html").write_text(
            f'<!DOCTYPE html><html><body><a href="/whl/{wheel}#sha256=00">{unquote(wheel)}</a></body></html>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/{root.name}"
    server.shutdown()


def served(index: str) -> dict:
    return {"PYTORCH_INDEX": index}


CU126 = f"{CUDA12_BUILD[1]} https://download.pytorch.org/whl/{CUDA12_BUILD[1]}"


@pytest.mark.parametrize("driver, code, choice, words", [
    ("580.82.07", 0, "PyPI", "runs CUDA 13.0: PyPI's torch"),
    ("580.65.06", 0, "PyPI", "PyPI's torch"),
    ("575.57.08", 0, CU126, "older than 580.65.06"),
    ("550.54.15", 0, CU126, "the CUDA 12.6 build"),
    ("535.183.01", 0, CU126, "the CUDA 12.6 build"),
    ("525.60.13", 0, CU126, "the CUDA 12.6 build"),
    ("470.82.01", 2, "", "older than 525.60.13, the oldest that any build"),
    ("n/a", 2, "", "cannot be read"),
    (None, 0, "PyPI", "no NVIDIA driver found"),
])
def test_install_picks_the_torch_build_for_the_driver(tmp_path, driver, code, choice, words):
    # torch 2.12+ is built for CUDA 12.6 and 13.0 only (unsloth's _auto_install.py): no cu128 wheel exists.
    result = torch_choice(fake_nvidia_smi(tmp_path / "bin", driver))
    assert result.returncode == code, result.stderr
    assert result.stdout.strip() == choice and words in result.stderr


@pytest.mark.parametrize("capability, code, words", [
    ("9.0", 0, "the CUDA 12.6 build"),                                    # H100 on a 550 driver: fine
    ("10.0", 2, "compute capability 10.0 (Blackwell), for which the CUDA 12.6 build has no kernels"),
    ("12.0", 2, "use a host whose driver is 580.65.06 or newer"),         # an RTX 5090
])
def test_a_blackwell_gpu_on_an_old_driver_is_refused_with_the_fix(tmp_path, capability, code, words):
    result = torch_choice(fake_nvidia_smi(tmp_path / "bin", "550.54.15", capability))
    assert result.returncode == code and words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_index_must_serve_the_pinned_wheels_before_the_venv_is_touched(tmp_path, torch_index):
    root, index = torch_index
    env = {**fake_nvidia_smi(tmp_path / "bin", "550.54.15"), **served(index), "VENV": str(tmp_path / "venv")}
    result = subprocess.run(["bash", str(REPO / "scripts" / "install.sh"), "gpu"], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert f"error: {index}/cu126 serves no torchvision==0.29.1+cu126 for {tag} on linux {platform.machine()}" \
        in result.stderr
    assert not (tmp_path / "venv").exists()
    # Served: the choice stands (the check install.sh runs first, run alone).
    (root / "cu126" / "torchvision" / "index.html").write_text(
        (root / "cu126" / "torch" / "index.html").read_text().replace("torch-", "torchvision-").replace("2.14.1", "0.29.1"))
    result = check_index({**fake_nvidia_smi(tmp_path / "bin", "550.54.15"), **served(index)})
    assert result.returncode == 0 and result.stdout.strip() == f"cu126 {index}/cu126", result.stderr


def check_index(env: dict) -> subprocess.CompletedProcess:
    """What install.sh asks before it touches a venv: the build, and whether its index serves the pins."""
    return subprocess.run([sys.executable, str(REPO / "training" / "pod" / "cuda_build.py"), "--check-index",
                           "torch==2.14.1", "torchvision==0.29.1"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_an_unreachable_index_stops_the_install_with_one_line(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**fake_nvidia_smi(tmp_path / "bin", "550.54.15"), **served(f"http://127.0.0.1:{port}/whl"),
           "RETRY_WAIT_SECONDS": "0.01"}
    result = check_index(env)
    assert result.returncode == 2 and result.stderr.count("error:") == 1, result.stderr
    assert f"http://127.0.0.1:{port}/whl/cu126/torch/ could not be read" in result.stderr


def test_the_pinned_wheel_is_the_cuda_build_the_table_assumes():
    import torch

    assert torch.version.cuda == PYPI_TORCH_CUDA
    assert minimum_driver("13.0") == "580.65.06" and minimum_driver("12.6") == "525.60.13"
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
