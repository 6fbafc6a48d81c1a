"""The smoke run, `python -m training.pod.smoke`, on the stand-in: every path, and a checklist that
exits 0 only when all of them passed."""

from __future__ import annotations

import json

from conftest import QUICK_VAL, run_cli


def rows(output: str) -> list[list[str]]:
    table = [line for line in output.splitlines() if line.startswith("| ") and "---" not in line]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table[1:]]


def test_every_path_passes_on_the_stand_in(tmp_path):
    out = tmp_path / "smoke"
    result = run_cli(["-m", "training.pod.smoke", "--config", QUICK_VAL, "--output", str(out)], timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    checklist = rows(result.stdout)
    assert [row[0] for row in checklist] == [
        "train: load, 4 steps, eval with generation, checkpoint", "SIGTERM mid-run: checkpoint, exit 143",
        "--resume auto to the end", "evaluate.py on 8 samples"]
    assert all(row[3].startswith("PASS") for row in checklist) and all(float(row[1]) > 0 for row in checklist)
    assert "base weights float32" in checklist[0][3] and "exit 143 with checkpoint-" in checklist[1][3]
    # what the paths left: the resumed run finished, and the adapter was scored on 8 samples
    assert json.loads((out / "run_status.json").read_text())["step"] == 8
    assert json.loads((out / "final" / "eval-test.json").read_text())["samples"] == 8
    assert "every path passed" in result.stdout


def test_a_failed_path_fails_the_smoke_run_and_stops_it(tmp_path):
    result = run_cli(["-m", "training.pod.smoke", "--config", QUICK_VAL, "--output", str(tmp_path / "smoke"),
                      "--set", "dataset_name=./no/such/data"], timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    checklist = rows(result.stdout)
    assert checklist[0][3] == "FAIL: train.py exited 2"
    assert [row[3] for row in checklist[1:]] == ["not run"] * 3 and "FAILED" in result.stdout


def test_bad_arguments_exit_2_before_any_run(tmp_path):
    result = run_cli(["-m", "training.pod.smoke", "--config", QUICK_VAL, "--set", "max_steps=zero"])
    assert result.returncode == 2 and "max_steps=zero: must be an integer" in result.stderr
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    result = run_cli(["-m", "training.pod.smoke", "--config", QUICK_VAL, "--output", str(tmp_path / "used")])
    assert result.returncode == 2 and "not empty" in result.stderr
