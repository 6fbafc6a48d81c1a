"""Bad input to train.py: one readable line per problem, exit 2, no traceback, nothing on disk."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import run_cli, train


def assert_clean_failure(result, *messages: str, created: list | None = None):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors, result.stderr
    for message in messages:
        assert any(message in line for line in errors), (message, errors)
    for path in created or []:
        assert not os.path.exists(path), f"{path} was created"


@pytest.mark.parametrize("override, message", [
    ("lerning_rate=1e-3", "unknown field 'lerning_rate' (did you mean 'learning_rate'?)"),
    ("max_steps=ten", "max_steps=ten: must be an integer"),
    ("learning_rate=-1", "learning_rate=-1.0: must be > 0"),
    ("dataset_name=./no/such/folder", "dataset_name='./no/such/folder': no such file or directory"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, override, message):
    out = tmp_path / "run"
    result = train(out, override)
    assert_clean_failure(result, message, created=[out])


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody may write in: mode 0500, and immutable where root ignores modes."""
    locked = tmp_path / "readonly"
    locked.mkdir()
    locked.chmod(0o500)
    immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode == 0
    try:
        (locked / "probe").touch()
    except OSError:
        pass
    else:
        pytest.skip("cannot make a read-only directory here (root without chattr)")
    yield locked
    if immutable:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    locked.chmod(0o700)


def test_unwritable_output_dir(read_only_dir):
    out = read_only_dir / "run"
    assert_clean_failure(train(out), "is not writable", created=[out])
    assert os.listdir(read_only_dir) == []


def test_output_dir_that_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_clean_failure(train(blocker / "run"), "is not writable")
    assert_clean_failure(train(blocker), "exists and is not a directory")


def test_several_problems_in_one_run(tmp_path):
    result = train(tmp_path / "run", "r=0", "lora_dropout=2", "optim=lion")
    assert_clean_failure(result, "r=0: must be >= 1", "lora_dropout=2.0: must be in [0, 1)", "optim='lion'")
    assert len(result.stderr.strip().splitlines()) == 3


def test_missing_config_file(tmp_path):
    result = run_cli(["training/train.py", "--config", "configs/experiments/nope.py"])
    assert_clean_failure(result, "no such file", "quick_val")


def test_help_is_fast_and_lists_exit_codes():
    result = run_cli(["training/train.py", "--help"])
    assert result.returncode == 0 and "143" in result.stdout and "--resume" in result.stdout


def test_a_stop_during_config_loading_is_a_stop_not_a_bad_config(tmp_path):
    # SIGTERM arriving while the experiment file is imported (it is code, and may be slow): the
    # loader's `except Exception` for broken files must not turn it into exit 2.
    config = tmp_path / "slow_import.py"
    config.write_text("import os, signal\n\nos.kill(os.getpid(), signal.SIGTERM)\n"
                      "from configs.experiments.quick_val import config  # noqa: E402,F401\n")
    result = train(tmp_path / "run", config=str(config))
    assert result.returncode == 143, result.stdout + result.stderr
    assert "error:" not in result.stderr and not (tmp_path / "run").exists()


def test_a_stop_inside_a_guarded_preflight_check_is_not_a_failed_check():
    from training.preflight import guarded
    from training.signals import Preempted

    def interrupted():
        raise Preempted("SIGTERM")

    with pytest.raises(Preempted):
        guarded("dataset", interrupted)
