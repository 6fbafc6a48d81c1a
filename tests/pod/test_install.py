"""The environment the harness installs: the Python it asks for and the pins it installs, as the
installed distributions themselves describe them."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_requires_python_admits_only_pythons_every_pinned_package_accepts():
    # numpy 2.4, pillow 13 and matplotlib 3.11 need Python >= 3.11: a 3.10 venv could not install them.
    ours = SpecifierSet(PYPROJECT["project"]["requires-python"])
    pythons = [f"3.{minor}" for minor in range(8, 15) if f"3.{minor}" in ours]
    assert pythons == ["3.11", "3.12"]
    for line in PYPROJECT["project"]["dependencies"]:
        name = Requirement(line).name
        needed = importlib.metadata.metadata(name).get("Requires-Python") or ""
        refused = [python for python in pythons if python not in SpecifierSet(needed)]
        assert not refused, f"{name} needs Python {needed}: requires-python admits {refused}"


def test_the_readme_quick_start_names_the_same_pythons():
    assert re.search(r"Python 3\.11.3\.12", (REPO / "README.md").read_text())


def constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "scripts" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"sys_platform": "linux",
                                                                          "platform_machine": "x86_64"}):
                [spec] = requirement.specifier
                pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def test_the_constraints_were_resolved_from_this_pyproject():
    from training import constraints as lock

    result = subprocess.run([sys.executable, "training/constraints.py", "check"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    text = (REPO / "pyproject.toml").read_text()
    assert lock.fingerprint(text.replace("bitsandbytes==0.50.2", "bitsandbytes==0.50.3")) != lock.fingerprint(text), \
        "a changed pin must make the constraints stale"


def test_the_pod_installs_the_whole_gpu_set_at_one_version_each():
    pins = constraints()
    # unpinned in pyproject.toml, pinned here: what unsloth pulls in resolves the same on every pod
    for name in ("trl", "xformers", "torchao", "cut-cross-entropy", "triton", "unsloth", "bitsandbytes"):
        assert name in pins, f"{name} is not pinned"
    for line in [*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["gpu"]]:
        requirement = Requirement(line)
        [spec] = requirement.specifier
        assert pins[canonicalize_name(requirement.name)] == spec.version, line
    # torch pins its CUDA runtime itself, and the CUDA 12.6 build another one than PyPI's
    assert not [name for name in pins if name.startswith(("nvidia-", "cuda-"))]


def test_every_install_runs_within_the_constraints():
    script = (REPO / "scripts" / "install.sh").read_text()
    for mode in ('-e "${ROOT}[dev]"', '-e "${ROOT}[gpu]"', '-e "$ROOT"'):
        assert f'package_install {mode} -c "$CONSTRAINTS"' in script, mode
    # a pod's venv is keyed by them, make's stamp rebuilds on them
    assert "scripts/constraints.txt" in (REPO / "scripts" / "setup_pod.sh").read_text()
    assert "scripts/constraints.txt" in (REPO / "Makefile").read_text().split("$(STAMP):")[1].splitlines()[0]
