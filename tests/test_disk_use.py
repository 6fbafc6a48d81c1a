"""The suite's own disk use: a nearly full CI disk once failed it at 73%, every test's runs still on
disk. A passed test's and a finished module's directories go as the suite goes."""

from __future__ import annotations

from pathlib import Path

import pytest

LEFT: dict[str, Path] = {}


@pytest.fixture(scope="module")
def module_run(module_mktemp) -> Path:
    run = module_mktemp("run")
    (run / "checkpoint.bin").write_bytes(bytes(1024))
    return run


def test_a_passing_test_writes_a_checkpoint(tmp_path, module_run):
    (tmp_path / "checkpoint.bin").write_bytes(bytes(1024))
    LEFT["test"], LEFT["module"] = tmp_path, module_run


def test_its_tmp_path_is_gone_once_it_passed_and_the_modules_stays_for_the_module():
    if "test" not in LEFT:
        pytest.skip("runs after test_a_passing_test_writes_a_checkpoint")
    assert not LEFT["test"].exists()
    assert (LEFT["module"] / "checkpoint.bin").exists()
