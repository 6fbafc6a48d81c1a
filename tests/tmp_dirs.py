"""Scratch directories for module-scoped fixtures, removed as the suite goes (a plugin of its own,
so that tests/test_disk_use.py can run it in an inner pytest session)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def module_mktemp(request, tmp_path_factory) -> Iterator[Callable[[str], Path]]:
    """mktemp for module-scoped fixtures. Their directories go when the module's tests are done,
    unless one failed: pytest does the same for a passed test's tmp_path
    (tmp_path_retention_policy = "failed"), so the suite holds one module's runs on disk at a time,
    not all of them (hundreds of MB, which a nearly full CI disk did not have)."""
    root = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    failed_before = request.session.testsfailed

    def mktemp(name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))

    yield mktemp
    if request.session.testsfailed == failed_before:
        shutil.rmtree(root, ignore_errors=True)
