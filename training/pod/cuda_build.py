"""Which torch build the host's NVIDIA driver can run, before torch is installed and after.

`torch==2.14.1` from PyPI is the CUDA 13.0 build, which needs driver 580 or newer; many hosts run
535-570, where `torch.cuda.is_available()` is simply False. For torch 2.12 and newer PyTorch builds
for CUDA 12.6 and 13.0 only (unsloth 2026.10.9's _auto_install.py says as much): an older driver
gets the CUDA 12.6 build from PyTorch's index, which has no kernels for Blackwell GPUs (compute
capability 10 and up). scripts/install.sh asks this module which index to take torch from, and
whether that index serves the pinned wheels, before it touches the venv; preflight uses it to say
why CUDA is unusable.

    python training/pod/cuda_build.py        # "cu126 https://download.pytorch.org/whl/cu126", or "" for PyPI's build
    python training/pod/cuda_build.py --check-index torch==2.14.1 torchvision==0.29.1   # the same, once the index
                                         # is seen to serve those wheels for this Python and machine

PYTORCH_INDEX (default https://download.pytorch.org/whl) points at a mirror of PyTorch's index.
Exit codes: 0 a build was chosen (the reason goes to stderr), 2 no build fits this host, or its
index does not serve the pinned wheels (one `error:` line). Standard library only: it runs with the
system Python, before the environment exists.
"""

from __future__ import annotations

import html.parser
import os
import platform
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urljoin

if __package__ in (None, ""):  # run as a script by install.sh: the repository root in place of training/pod/
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from training.errors import EXIT_OK, EXIT_USER_ERROR  # noqa: E402  (standard library only too)

# The CUDA version of the torch wheel on PyPI (torch.version.cuda of torch==2.14.1).
PYPI_TORCH_CUDA = "13.0"
# Oldest Linux driver for each CUDA major version, with minor-version compatibility (NVIDIA's CUDA
# release notes, table 2): a CUDA 12.x build runs on any 525.60.13+ driver, 13.x on 580.65.06+.
MIN_DRIVER = {"13": (580, 65, 6), "12": (525, 60, 13)}
# The build for drivers that predate CUDA 13: the only CUDA 12 build of torch 2.12+ on PyTorch's
# own index, as (CUDA version, the wheels' local version label).
CUDA12_BUILD = ("12.6", "cu126")
# cu126 wheels stop at sm_90 (Hopper): a GPU of this compute capability or newer needs CUDA 13.
BLACKWELL = (10, 0)
INDEX_ENV, DEFAULT_INDEX = "PYTORCH_INDEX", "https://download.pytorch.org/whl"
INDEX_TRIES = 3


def parse_version(text: str) -> tuple[int, ...] | None:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)*)\s*", text or "")
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def nvidia_smi(*fields: str) -> list[list[str]] | None:
    """One row of `fields` per GPU from nvidia-smi; None when it is missing, fails or says nothing."""
    try:
        answer = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [[cell.strip() for cell in line.split(",")] for line in answer.stdout.splitlines() if line.strip()]
    return rows if answer.returncode == 0 and rows else None


def driver_version() -> str | None:
    """The NVIDIA driver's version, from nvidia-smi (or /proc when nvidia-smi is missing); None
    when this host has no NVIDIA driver."""
    rows = nvidia_smi("driver_version")
    if rows:
        return rows[0][0]
    try:  # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 ..."
        with open("/proc/driver/nvidia/version", encoding="utf-8") as source:
            match = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)", source.read())
        return match.group(1) if match else None
    except OSError:
        return None


def compute_capability() -> tuple[int, ...] | None:
    """The newest compute capability among this host's GPUs (nvidia-smi's compute_cap, which older
    drivers do not know); None when it cannot be read."""
    rows = nvidia_smi("driver_version", "compute_cap")
    found = [parse_version(row[1]) for row in rows or [] if len(row) > 1]
    found = [version for version in found if version]
    return max(found) if found else None


def driver_supports(driver: str, cuda: str) -> bool:
    """Whether `driver` runs a build for CUDA `cuda` ("12.6", "13.0")."""
    version, minimum = parse_version(driver), MIN_DRIVER.get(cuda.split(".")[0])
    return bool(version and minimum and version >= minimum)


def minimum_driver(cuda: str) -> str:
    minimum = MIN_DRIVER.get(cuda.split(".")[0])
    return ".".join(f"{part:02d}" if i == 2 else str(part) for i, part in enumerate(minimum)) if minimum else "?"


def index_base() -> str:
    return (os.environ.get(INDEX_ENV) or DEFAULT_INDEX).rstrip("/")


def torch_build(driver: str | None, capability: tuple[int, ...] | None = None) -> tuple[tuple[str, str] | None, str]:
    """((local version label, index URL), or None for PyPI's build; why). ValueError when no build
    fits the host."""
    if driver is None:
        return None, f"no NVIDIA driver found: PyPI's torch (CUDA {PYPI_TORCH_CUDA} build)"
    if parse_version(driver) is None:
        raise ValueError(f"NVIDIA driver version {driver!r} (nvidia-smi) cannot be read")
    if driver_supports(driver, PYPI_TORCH_CUDA):
        return None, f"NVIDIA driver {driver} runs CUDA {PYPI_TORCH_CUDA}: PyPI's torch"
    cuda, label = CUDA12_BUILD
    if not driver_supports(driver, cuda):
        raise ValueError(f"NVIDIA driver {driver} is older than {minimum_driver(cuda)}, the oldest that any build of "
                         f"the pinned torch runs on: use a host (pod) with a newer driver")
    if capability and capability >= BLACKWELL:
        shown = ".".join(map(str, capability))
        raise ValueError(f"NVIDIA driver {driver} with a GPU of compute capability {shown} (Blackwell), for which the "
                         f"CUDA {cuda} build has no kernels, and PyPI's CUDA {PYPI_TORCH_CUDA} build needs a newer driver: "
                         f"use a host whose driver is {minimum_driver(PYPI_TORCH_CUDA)} or newer (launch asks RunPod for "
                         f"CUDA {PYPI_TORCH_CUDA} hosts)")
    index = f"{index_base()}/{label}"
    return (label, index), (f"NVIDIA driver {driver} is older than {minimum_driver(PYPI_TORCH_CUDA)}, which PyPI's "
                            f"CUDA {PYPI_TORCH_CUDA} torch needs: the CUDA {cuda} build from {index}")


class _Links(html.parser.HTMLParser):
    """The file names a PEP 503 project page links to."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href") if tag == "a" else None
        if href:
            self.names.append(unquote(href.split("#", 1)[0].rsplit("/", 1)[-1]))


def project_files(index: str, project: str) -> list[str]:
    """The files of `project` on the PEP 503 `index`; ValueError when the page cannot be read."""
    url = urljoin(index.rstrip("/") + "/", f"{project}/")
    wait = float(os.environ.get("RETRY_WAIT_SECONDS") or 2)
    for attempt in range(1, INDEX_TRIES + 1):
        try:
            with urllib.request.urlopen(url, timeout=30) as page:
                links = _Links()
                links.feed(page.read().decode("utf-8", "replace"))
                return links.names
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return []
            problem = f"HTTP {error.code}"
        except (OSError, ValueError) as error:
            problem = str(getattr(error, "reason", None) or error)
        if attempt < INDEX_TRIES:
            time.sleep(wait * 2 ** (attempt - 1))
    raise ValueError(f"{url} could not be read ({problem}, {INDEX_TRIES} tries): check the network, or set "
                     f"{INDEX_ENV} to a mirror of PyTorch's index")


def check_served(index: str, label: str, pins: list[str]) -> None:
    """ValueError unless `index` has a wheel of each `name==version` pin, built `+label`, for this
    Python and machine: what pip would need before it changes anything."""
    tag, machine = f"cp{sys.version_info.major}{sys.version_info.minor}", platform.machine()
    for pin in pins:
        name, _, version = pin.partition("==")
        wheel = re.compile(rf"^{re.escape(name)}-{re.escape(version)}\+{re.escape(label)}-{tag}-{tag}-"
                           rf"(?:many)?linux[\w.]*_{re.escape(machine)}\.whl$")
        if not any(wheel.match(file) for file in project_files(index, name)):
            raise ValueError(f"{index} serves no {name}=={version}+{label} for {tag} on linux {machine}: no build of "
                             f"the pinned torch for this host there; use a host whose driver is "
                             f"{minimum_driver(PYPI_TORCH_CUDA)} or newer, or another Python (3.11, 3.12)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = argv[:1] == ["--check-index"]
    try:
        build, why = torch_build(driver_version(), compute_capability())
        if build and check:
            check_served(build[1], build[0], argv[1:])
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"torch: {why}", file=sys.stderr)
    print(" ".join(build) if build else "")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
