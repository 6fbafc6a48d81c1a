"""Which torch build the host's NVIDIA driver can run, before torch is installed and after.

`torch==2.14.1` from PyPI is the CUDA 13.0 build, which needs driver 580 or newer; many hosts run
535-570, where `torch.cuda.is_available()` is simply False. scripts/install.sh asks this module
which index to take torch from, and preflight uses it to say why CUDA is unusable.

    python training/cuda_build.py     # "cu128 https://download.pytorch.org/whl/cu128", or "" for PyPI's build

Exit codes: 0 a build was chosen (the reason goes to stderr), 2 the driver is older than any build.
Standard library only: it runs with the system Python, before the environment exists.
"""

from __future__ import annotations

import re
import subprocess
import sys

# The CUDA version of the torch wheel on PyPI (torch.version.cuda of torch==2.14.1).
PYPI_TORCH_CUDA = "13.0"
# Oldest Linux driver for each CUDA major version, with minor-version compatibility (NVIDIA's CUDA
# release notes, table 2): a CUDA 12.x build runs on any 525.60.13+ driver, 13.x on 580.65.06+.
MIN_DRIVER = {"13": (580, 65, 6), "12": (525, 60, 13)}
# The build for drivers that predate CUDA 13: PyTorch's own index, the newest CUDA 12 it builds,
# as (CUDA version, the wheels' local version label, the index).
CUDA12_BUILD = ("12.8", "cu128", "https://download.pytorch.org/whl/cu128")


def parse_version(text: str) -> tuple[int, ...] | None:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)*)\s*", text or "")
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def driver_version() -> str | None:
    """The NVIDIA driver's version, from nvidia-smi (or /proc when nvidia-smi is missing); None
    when this host has no NVIDIA driver."""
    try:
        answer = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30)
        if answer.returncode == 0 and answer.stdout.strip():
            return answer.stdout.splitlines()[0].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:  # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 ..."
        with open("/proc/driver/nvidia/version", encoding="utf-8") as source:
            match = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)", source.read())
        return match.group(1) if match else None
    except OSError:
        return None


def driver_supports(driver: str, cuda: str) -> bool:
    """Whether `driver` runs a build for CUDA `cuda` ("12.8", "13.0")."""
    version, minimum = parse_version(driver), MIN_DRIVER.get(cuda.split(".")[0])
    return bool(version and minimum and version >= minimum)


def minimum_driver(cuda: str) -> str:
    minimum = MIN_DRIVER.get(cuda.split(".")[0])
    return ".".join(f"{part:02d}" if i == 2 else str(part) for i, part in enumerate(minimum)) if minimum else "?"


def torch_build(driver: str | None) -> tuple[tuple[str, str] | None, str]:
    """((local version label, index URL), or None for PyPI's build; why). ValueError when no build
    fits the driver."""
    if driver is None:
        return None, f"no NVIDIA driver found: PyPI's torch (CUDA {PYPI_TORCH_CUDA} build)"
    if parse_version(driver) is None:
        raise ValueError(f"NVIDIA driver version {driver!r} (nvidia-smi) cannot be read")
    if driver_supports(driver, PYPI_TORCH_CUDA):
        return None, f"NVIDIA driver {driver} runs CUDA {PYPI_TORCH_CUDA}: PyPI's torch"
    cuda, label, index = CUDA12_BUILD
    if driver_supports(driver, cuda):
        return (label, index), (f"NVIDIA driver {driver} is older than {minimum_driver(PYPI_TORCH_CUDA)}, which PyPI's "
                       f"CUDA {PYPI_TORCH_CUDA} torch needs: the CUDA {cuda} build from {index}")
    raise ValueError(f"NVIDIA driver {driver} is older than {minimum_driver(cuda)}, the oldest that any build of "
                     f"the pinned torch runs on: use a host (pod) with a newer driver")


def main() -> int:
    try:
        build, why = torch_build(driver_version())
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"torch: {why}", file=sys.stderr)
    print(" ".join(build) if build else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
