"""The suite's own disk use: a nearly full CI disk once failed it at 73%, every test's runs still on
disk. A passed test's and a finished module's directories go as the suite goes; a failed one's stay
to be looked into."""

from __future__ import annotations

import textwrap
import tomllib

import pytest

from conftest import REPO

pytest_plugins = ["pytester"]

# Two tests in an inner session with the suite's plugin (tests/tmp_dirs.py): the first writes into
# its tmp_path and records where; the second, run after it, finds it gone.
PASSING = """
    from pathlib import Path

    def test_a_passing_test_writes_a_checkpoint(tmp_path, pytestconfig):
        (tmp_path / "checkpoint.bin").write_bytes(bytes(1024))
        Path(pytestconfig.rootpath, "where.txt").write_text(str(tmp_path))

    def test_its_tmp_path_is_gone_by_the_next_test(pytestconfig):
        assert not Path(Path(pytestconfig.rootpath, "where.txt").read_text()).exists()
"""


def test_a_passed_tests_tmp_path_is_gone_by_the_next_test(pytester):
    # The inner session keeps tmp_path as the suite's own configuration says (pyproject.toml).
    policy = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    pytester.makeini(f"[pytest]\ntmp_path_retention_policy = {policy['tmp_path_retention_policy']}\n")
    pytester.makepyfile(test_a=textwrap.dedent(PASSING))
    result = pytester.runpytest("-p", "tmp_dirs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


# Two modules in an inner session with the suite's plugin: the first's module fixture writes a
# checkpoint and records where; the second finds it gone, or kept when a test of the first failed.
FIRST = """
    from pathlib import Path
    import pytest

    @pytest.fixture(scope="module")
    def run(module_mktemp):
        path = module_mktemp("run")
        (path / "checkpoint.bin").write_bytes(bytes(1024))
        return path

    def test_uses_the_run(run, pytestconfig):
        Path(pytestconfig.rootpath, "where.txt").write_text(str(run))
        assert run.exists()

    def test_second(run):
        assert {failing}
"""
SECOND = """
    from pathlib import Path

    def test_the_first_modules_run(pytestconfig):
        run = Path(Path(pytestconfig.rootpath, "where.txt").read_text())
        assert (run / "checkpoint.bin").exists() == {kept}
"""


@pytest.mark.parametrize("first_fails", [False, True])
def test_a_module_fixtures_directory_goes_with_its_module_unless_a_test_failed(pytester, first_fails):
    pytester.makepyfile(test_a=textwrap.dedent(FIRST.format(failing=not first_fails)),
                        test_b=textwrap.dedent(SECOND.format(kept=first_fails)))
    result = pytester.runpytest("-p", "tmp_dirs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2 if first_fails else 3, failed=1 if first_fails else 0)
