"""`python -m training.pod run`, the pod's supervisor after setup: the real CLI with the real trainer
on the stand-in, against a local fake of RunPod's API. Its runs from setup_pod.sh (a finished run, a
preemption and a restart, torchrun, parking) are in tests/pod/test_setup_pod.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, wait_for
from fake_servers import FakeServer, runpod_api, stop_requests
from training.errors import EXIT_BUDGET, EXIT_PREEMPTED, EXIT_USER_ERROR
from training.outcome import RunOutcome
from training.outcome_line import read as read_outcome
from training.pod.cluster import launcher as cluster_launcher
from training.pod.supervisor import exit_code, launcher

POD_ID = "pod-5up3r"
KEY = "rpa_supervisor_test_key_0123456789"


@pytest.mark.parametrize("env, expected", [  # training.pod.cluster's table has the arguments themselves
    ({}, ["py"]), ({"RUNPOD_GPU_COUNT": "1"}, ["py"]),
    ({"RUNPOD_GPU_COUNT": "2"}, ["py", "-m", "torch.distributed.run", *cluster_launcher({"RUNPOD_GPU_COUNT": "2"})]),
])
def test_one_process_or_torchrun(env, expected):
    assert launcher(env, python="py") == expected


@pytest.mark.parametrize("returncode, code", [(0, 0), (3, 3), (-signal.SIGTERM, 143), (-signal.SIGKILL, 137)])
def test_exit_codes_as_a_shell_reports_them(returncode, code):
    assert exit_code(returncode) == code


def supervise(tmp_path: Path, server: FakeServer, config: str, **extra: str) -> subprocess.Popen:
    env = {**os.environ, "CONFIG_PATH": config, "VOLUME_PATH": str(tmp_path / "volume"), "AUTO_STOP": "1",
           "RUNPOD_POD_ID": POD_ID, "RUNPOD_API_KEY": KEY, "RUNPOD_API_BASE_URL": server.url,
           "RETRY_WAIT_SECONDS": "0.01", **extra}
    (tmp_path / "volume").mkdir(exist_ok=True)
    with open(tmp_path / "out.txt", "w") as out:
        return subprocess.Popen([sys.executable, "-m", "training.pod", "run"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def tiny_config(tmp_path: Path, **fields) -> str:
    path = tmp_path / "tiny.py"
    path.write_text("import dataclasses\n\nfrom configs.experiments.quick_val import config as parent\n\n"
                    f"config = dataclasses.replace(parent, output_dir={str(tmp_path / 'run')!r}, "
                    + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")\n")
    return str(path)


def test_without_a_config_one_line_and_exit_2(tmp_path):
    with FakeServer(runpod_api) as server:
        process = supervise(tmp_path, server, "")
        assert process.wait(timeout=60) == EXIT_USER_ERROR
    out = (tmp_path / "out.txt").read_text()
    assert "error: CONFIG_PATH not set" in out and "setup ended with exit code 2" in out
    assert "run-outcome: outcome=failed exit=2 step=none phase=setup" in out
    assert stop_requests(server) == [POD_ID]  # AUTO_STOP: a pod that cannot run does not bill on


def test_a_node_that_cannot_join_its_cluster_exits_2_before_preflight(tmp_path):
    with FakeServer(runpod_api) as server:
        process = supervise(tmp_path, server, tiny_config(tmp_path), NUM_NODES="2", NODE_RANK="x")
        assert process.wait(timeout=60) == EXIT_USER_ERROR
    out = (tmp_path / "out.txt").read_text()
    assert "error: NODE_RANK=x: must be an integer between 0 and 1" in out and "preflight:" not in out
    assert stop_requests(server) == [POD_ID]


@pytest.mark.parametrize("gpus", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_a_budget_stop_is_exit_3_and_stops_the_pod(tmp_path, gpus):
    # Under torchrun (2 ranks, 50 s here: slow; its 143 runs by default in test_setup_pod.py) the
    # launcher exits 1 when its ranks exit 3: the run's own code comes from run_status.json.
    config = tiny_config(tmp_path, max_steps=6, eval_steps=100, save_steps=100, budget_cap=0.01)
    with FakeServer(runpod_api) as server:
        process = supervise(tmp_path, server, config, RUNPOD_GPU_COUNT=gpus, GPU_HOURLY_RATE="36000")
        returncode = process.wait(timeout=240)
    out = (tmp_path / "out.txt").read_text()
    assert returncode == EXIT_BUDGET, out
    assert ("--nproc_per_node=2" in out) == (gpus == "2")
    assert "training ended with exit code 3: budget cap reached" in out
    reading = read_outcome(out.splitlines())  # the line the fleet reads: the run's own code, torchrun or not
    assert (reading.outcome, reading.exit_code, reading.phase) == (RunOutcome.BUDGET_STOPPED, 3, "training")
    assert stop_requests(server) == [POD_ID] and KEY not in out
    # Preflight once per pod start: the supervisor's --preflight-only child checks, train.py does not again.
    assert out.count("preflight  config") == 1 and "preflight passed (the supervisor's, for this pod start)" in out


def test_a_signal_during_preflight_stops_there_and_leaves_the_pod_alone(tmp_path):
    with FakeServer(runpod_api) as server:
        process = supervise(tmp_path, server, tiny_config(tmp_path, max_steps=2))
        try:
            assert wait_for(lambda: "preflight: python" in (tmp_path / "out.txt").read_text(), timeout=60)
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    out = (tmp_path / "out.txt").read_text()
    assert returncode == EXIT_PREEMPTED, out
    assert "got SIGTERM: forwarding SIGTERM" in out and "stopped during preflight" in out
    assert "training:" not in out and stop_requests(server) == [] and not (tmp_path / "run").exists()


def test_a_signal_while_the_log_drains_keeps_the_runs_exit_code(tmp_path):
    # The pod's end asks RunPod to stop it, and RunPod's SIGTERM may come while the log writer
    # (here a 5 s sleep, started as setup_pod.sh starts its writer) drains: the code stays the run's.
    with FakeServer(runpod_api) as server:
        env = {**os.environ, "CONFIG_PATH": "", "VOLUME_PATH": str(tmp_path), "AUTO_STOP": "1",
               "RUNPOD_POD_ID": POD_ID, "RUNPOD_API_KEY": KEY, "RUNPOD_API_BASE_URL": server.url}
        with open(tmp_path / "out.txt", "w") as out:
            process = subprocess.Popen(["bash", "-c", f"sleep 5 & export POD_LOG_PID=$!; exec {sys.executable} "
                                        "-m training.pod run"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda: stop_requests(server) == [POD_ID], timeout=60)
            assert wait_for(lambda: "setup ended with exit code 2" in (tmp_path / "out.txt").read_text(), timeout=10)
            assert process.poll() is None, "the supervisor did not wait for its log writer"
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert returncode == EXIT_USER_ERROR, (tmp_path / "out.txt").read_text()
