"""`status` and `stop` against the local fake of RunPod's REST API v2: which pods belong to which
experiment, the exact stop/terminate requests, refusals that protect checkpoints, and a flaky network."""

from __future__ import annotations

import json
import socket

import pytest
from experiment_repo import experiment, git, in_process, make_repo, tree_files
from fake_runpod import API_KEY, FakeRunPod


@pytest.fixture(scope="module")
def repo(module_mktemp):
    work = make_repo(module_mktemp("status"), tree_files())
    git(work, "branch", "lr-1e4")
    return work


@pytest.fixture
def api(tmp_path):
    runs = tmp_path / "volume" / "checkpoints"
    (runs / "lr-1e4").mkdir(parents=True)
    (runs / "lr-1e4" / "run_status.json").write_text(json.dumps(
        {"status": "running", "step": 120, "max_steps": 500, "cost_usd": 0.4231, "updated_at": "2026-11-23T10:00:00Z",
         "wandb_url": "https://wandb.ai/oilco/well-log-ocr/runs/lr-1e4-0123abcd"}))
    with FakeRunPod() as fake:
        fake.env = {"RUNPOD_API_BASE_URL": fake.url, "RUNPOD_API_KEY": API_KEY, "HOME": str(tmp_path),
                    "NO_PROXY": "127.0.0.1,localhost", "VOLUME_PATH": str(tmp_path / "volume")}
        yield fake
    assert fake.server_errors == []


@pytest.fixture
def run(api, monkeypatch, capsys):
    """The CLI in this interpreter (one subprocess test below covers `python -m`), against the fake API."""
    cli = in_process(monkeypatch, capsys)

    def call(repo, *args, env=None):
        result = cli(repo, *args, env={**api.env, **(env or {})})
        assert API_KEY not in result.stdout + result.stderr
        return result

    return call


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()]


def test_status_lists_experiment_pods_with_their_runs(repo, api, run):
    first = api.add_pod("exp-lr-1e4", uptime=3725, cost=0.69)
    second = api.add_pod("exp-r32", status="EXITED", uptime=0, cost=0.34)
    api.add_pod("my-notebook")
    result = run(repo, "status")
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout) == [  # an EXITED pod bills no GPU: v2 gives it cost 0
        ["experiment", "pod", "state", "gpu", "uptime", "$/h", "step", "cost", "run"],
        ["lr-1e4", first, "RUNNING", "NVIDIA", "GeForce", "RTX", "4090", "1h02m", "0.69", "120/500", "$0.42", "running"],
        ["r32", second, "EXITED", "NVIDIA", "GeForce", "RTX", "4090", "-", "-", "-", "-", "not", "readable", "here"],
    ]
    assert api.routes() == ["GET /v2/pods"]

    assert "W&B" not in result.stdout
    result = run(repo, "status", "r32")
    assert result.returncode == 0 and len(rows(result.stdout)) == 2 and "lr-1e4" not in result.stdout
    result = run(repo, "status", "lr-1e4")
    assert result.stdout.splitlines()[-1] == "W&B: https://wandb.ai/oilco/well-log-ocr/runs/lr-1e4-0123abcd"


def test_status_of_an_experiment_without_a_pod(repo, api, run):
    result = run(repo, "status", "lr-1e4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["experiment lr-1e4: no pod", "  run files: running, step 120/500, $0.42"]
    result = run(repo, "status", "nope")
    assert result.returncode == 2 and "unknown experiment 'nope'" in result.stderr


def test_stop_then_stop_again(repo, api, run):
    pod = api.add_pod("exp-lr-1e4")
    result = run(repo, "stop", "lr-1e4")
    assert result.returncode == 0, result.stderr
    assert f"stopped pod {pod} (lr-1e4)" in result.stdout
    stops = api.calls("POST", f"/v2/pods/{pod}/action")
    assert [s["body"] for s in stops] == [{"action": "stop"}] and api.pods[pod]["status"] == "EXITED"

    result = run(repo, "stop", "lr-1e4")
    assert result.returncode == 0 and "already stopped (EXITED)" in result.stdout
    assert len(api.calls("POST", f"/v2/pods/{pod}/action")) == 1


def test_terminate_protects_checkpoints_on_a_pod_volume(repo, api, run):
    pod = api.add_pod("exp-lr-1e4", volume_gb=50)
    result = run(repo, "stop", "lr-1e4", "--terminate")
    assert result.returncode == 2 and "terminating deletes" in result.stderr and "--delete-data" in result.stderr
    assert api.calls("DELETE", "/v2/pods") == [] and pod in api.pods

    result = run(repo, "stop", "lr-1e4", "--terminate", "--delete-data")
    assert result.returncode == 0, result.stderr
    assert f"terminated pod {pod} (lr-1e4)" in result.stdout
    assert [r["route"] for r in api.calls("DELETE", "/v2/pods")] == [f"/v2/pods/{pod}"] and api.pods == {}


def test_terminate_a_pod_on_a_network_volume(repo, api, run):
    pod = api.add_pod("exp-lr-1e4", volume_gb=0)
    result = run(repo, "stop", "lr-1e4", "--terminate")
    assert result.returncode == 0 and api.pods == {} and len(api.calls("DELETE", "/v2/pods")) == 1, result.stderr
    result = run(repo, "stop", "lr-1e4")
    assert result.returncode == 2 and "no pod named exp-lr-1e4" in result.stderr
    assert pod not in result.stdout


def test_a_flaky_answer_is_retried(repo, api, run):
    api.add_pod("exp-lr-1e4")
    api.fail("GET /v2/pods", status=502, body="<html>502 Bad Gateway</html>")
    result = run(repo, "status", env={"RETRY_WAIT_SECONDS": "0.01"})
    assert result.returncode == 0, result.stderr
    assert api.routes() == ["GET /v2/pods", "GET /v2/pods"] and "lr-1e4" in result.stdout


def test_unreachable_api_and_missing_key(repo, api, run):
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    result = run(repo, "stop", "lr-1e4", env={"RUNPOD_API_BASE_URL": f"http://127.0.0.1:{closed}",
                                              "RETRY_WAIT_SECONDS": "0.01"})
    assert result.returncode == 2
    assert result.stderr == "error: RunPod API, list pods: unreachable (ConnectionError, 3 tries): try again later\n"
    result = run(repo, "status", env={"RUNPOD_API_KEY": ""})
    assert result.returncode == 2 and "RUNPOD_API_KEY is not set" in result.stderr


def test_status_through_python_m(repo, api):
    pod = api.add_pod("exp-lr-1e4")
    result = experiment(repo, "status", "lr-1e4", env=api.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[9:11] == ["lr-1e4", pod]
