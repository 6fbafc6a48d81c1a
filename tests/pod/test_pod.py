"""`python -m training.pod stop`: REST API v2's stop action against a local fake of RunPod's API."""

from __future__ import annotations

import os

import pytest

from fake_servers import FakeServer, Reply, failing_first, runpod_api, stop_requests
from training.pod.commands import main

KEY = "rpa_test_key_0123456789abcdef"


@pytest.fixture
def pod_env(monkeypatch):
    def point_at(server: FakeServer) -> None:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)
        monkeypatch.setenv("RUNPOD_POD_ID", "pod-42")
        monkeypatch.setenv("RUNPOD_API_KEY", KEY)
        monkeypatch.setenv("RETRY_WAIT_SECONDS", "0.01")

    return point_at


def test_stop_sends_one_stop_action_with_the_key_in_a_header(pod_env, capsys):
    with FakeServer(runpod_api) as server:
        pod_env(server)
        assert main(["stop"]) == 0
    assert stop_requests(server) == ["pod-42"]
    request = server.requests[0]
    assert request.headers["Authorization"] == f"Bearer {KEY}" and KEY not in request.path
    assert request.method == "POST" and request.route == "/v2/pods/pod-42/action"
    assert "asked RunPod to stop pod pod-42 (status: EXITED)" in capsys.readouterr().out


def test_gateway_errors_are_retried(pod_env):
    with FakeServer(failing_first(2, "/action", runpod_api, status=502)) as server:
        pod_env(server)
        assert main(["stop"]) == 0
    assert server.count("/action") == 3 and stop_requests(server) == ["pod-42"] * 3


def test_a_rejected_key_fails_at_once_without_showing_it(pod_env, capsys):
    with FakeServer(lambda request: Reply.json({"title": "Unauthorized", "status": 401, "detail": "bad key"},
                                               status=401)) as server:
        pod_env(server)
        assert main(["stop"]) == 1
    assert server.count("/action") == 1
    err = capsys.readouterr().err
    assert "RunPod API, stop pod pod-42: unauthorized: check RUNPOD_API_KEY" in err and KEY not in err


def test_an_api_that_stays_down_gives_up_after_3_tries(pod_env, capsys):
    with FakeServer(failing_first(100, "/action", runpod_api)) as server:
        pod_env(server)
        assert main(["stop"]) == 1
    assert server.count("/action") == 3
    assert "RunPod API, stop pod pod-42: HTTP 503: no detail given (gave up after 3 tries)" in capsys.readouterr().err


def test_outside_a_pod(monkeypatch, capsys):
    monkeypatch.delenv("RUNPOD_POD_ID", raising=False)
    assert main(["stop"]) == 2
    assert "RUNPOD_POD_ID not set" in capsys.readouterr().err


def runpodctl(monkeypatch, tmp_path, refuses: bool = False):
    """A fake `runpodctl` first on PATH, recording its arguments."""
    calls = tmp_path / "runpodctl.txt"
    refuse = 'echo "Error: pod not found" >&2; exit 1' if refuses else 'echo "pod stopped"'
    (tmp_path / "runpodctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n{refuse}\n')
    (tmp_path / "runpodctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    return calls


def test_the_self_stop_is_runpodctl_pod_stop_first(pod_env, monkeypatch, tmp_path, capsys):
    # The documented form; `stop pod` is a deprecated alias over GraphQL, which RunPod retires.
    calls = runpodctl(monkeypatch, tmp_path)
    with FakeServer(runpod_api) as server:
        pod_env(server)
        assert main(["stop"]) == 0
    assert calls.read_text() == "pod stop pod-42\n" and stop_requests(server) == []
    assert "stopped pod pod-42 (runpodctl pod stop)" in capsys.readouterr().out


def test_when_runpodctl_fails_the_rest_api_stops_the_pod_and_both_are_said(pod_env, monkeypatch, tmp_path, capsys):
    calls = runpodctl(monkeypatch, tmp_path, refuses=True)
    with FakeServer(runpod_api) as server:
        pod_env(server)
        assert main(["stop"]) == 0
    assert calls.read_text() == "pod stop pod-42\n" and stop_requests(server) == ["pod-42"]
    out = capsys.readouterr().out
    assert "runpodctl pod stop pod-42 failed (exit 1: Error: pod not found); trying RunPod's REST API" in out
    assert "asked RunPod to stop pod pod-42 (status: EXITED)" in out


def test_when_neither_stops_it_the_user_is_told_what_to_do(pod_env, monkeypatch, tmp_path, capsys):
    runpodctl(monkeypatch, tmp_path, refuses=True)
    with FakeServer(failing_first(100, "/action", runpod_api)) as server:
        pod_env(server)
        assert main(["stop"]) == 1
    assert "stop it in the RunPod console (Pods > the pod > Stop); it bills until then" in capsys.readouterr().err
    monkeypatch.delenv("RUNPOD_API_KEY")
    assert main(["stop"]) == 2
    assert "RUNPOD_API_KEY not set, so the REST API cannot stop pod pod-42 either" in capsys.readouterr().err


def test_train_py_starts_the_dead_man_switchs_idle_clock(monkeypatch, tmp_path):
    from training.pod.commands import mark_training_started

    marker = tmp_path / "started"
    mark_training_started({"TRAINING_STARTED_FILE": str(marker)})
    assert marker.exists()
    mark_training_started({})  # off a pod: nothing to start
