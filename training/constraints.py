"""The constraints every install runs within: scripts/constraints.txt, the whole resolved set of the
`gpu` extra (every package at one version, trl, xformers, torchao and cut_cross_entropy included),
so a pod installs exactly what was resolved and tested, and dev and CI the same versions where
they share packages.

    bash scripts/install.sh lock                 # after a change to pyproject.toml's dependencies
    python training/constraints.py check         # 0 when the file matches pyproject.toml, else 1

`install.sh lock` resolves with uv (`uv pip compile --universal`, for every Python that
requires-python admits, every platform by markers) and pipes the result to `write`, which drops
torch's own CUDA runtime wheels (nvidia-*, cuda-*): torch pins them exactly itself, and the CUDA
12.6 build from PyTorch's index pins other ones than PyPI's CUDA 13.0 build. The header records a
fingerprint of what the resolve started from; `check` compares it with pyproject.toml.
Standard library only: install.sh runs it before the environment exists.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
CONSTRAINTS = ROOT / "scripts" / "constraints.txt"
EXTRA = "gpu"
COMMAND = ("uv", "pip", "compile", "pyproject.toml", "--extra", EXTRA, "--universal", "--python-version", "3.11",
           "--no-header", "--no-annotate")
# torch's CUDA runtime: pinned by torch's own metadata, different for each CUDA build of one torch.
TORCH_RUNTIME = re.compile(r"^(nvidia-|cuda-)", re.IGNORECASE)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+")


def fingerprint(pyproject_text: str) -> str:
    """What the resolve depends on: requires-python, the dependencies and the extra's, as pinned."""
    import tomllib

    project = tomllib.loads(pyproject_text)["project"]
    what = {"requires-python": project.get("requires-python"), "dependencies": sorted(project["dependencies"]),
            EXTRA: sorted(project["optional-dependencies"][EXTRA])}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def header(pyproject_text: str) -> str:
    return (f"# Every install runs within these pins (training/constraints.py says why): the resolved set of\n"
            f"# pyproject.toml's {EXTRA!r} extra, less torch's CUDA runtime (nvidia-*, cuda-*), which torch pins.\n"
            f"# Written by `bash scripts/install.sh lock`: {' '.join(COMMAND)}\n"
            f"# pyproject fingerprint: {fingerprint(pyproject_text)}\n")


def write(resolved: str, pyproject_text: str) -> str:
    """The constraints file for uv's `resolved` requirements."""
    pins = [line for line in resolved.splitlines() if _PIN.match(line.strip())
            and not TORCH_RUNTIME.match(line.strip())]
    return header(pyproject_text) + "\n".join(pins) + "\n"


def recorded_fingerprint(text: str) -> str | None:
    match = re.search(r"^# pyproject fingerprint: (\w+)$", text, re.MULTILINE)
    return match.group(1) if match else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["write"]:
        CONSTRAINTS.write_text(write(sys.stdin.read(), PYPROJECT.read_text()))
        return 0
    if argv == ["check"]:
        wanted = fingerprint(PYPROJECT.read_text())
        found = recorded_fingerprint(CONSTRAINTS.read_text()) if CONSTRAINTS.exists() else None
        if found != wanted:
            print(f"error: {CONSTRAINTS.relative_to(ROOT)} was resolved from other dependencies than pyproject.toml's "
                  f"(fingerprint {found}, now {wanted}): run bash scripts/install.sh lock and commit it", file=sys.stderr)
            return 1
        return 0
    print("usage: python training/constraints.py write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
