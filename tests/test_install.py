"""The environment the harness installs: the Python it asks for and the pins it installs, as the
installed distributions themselves describe them."""

from __future__ import annotations

import importlib.metadata
import re

import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

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
