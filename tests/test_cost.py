"""Cost: the rate table, which rate wins (a pod's own rate from RunPod's API first), the budget verdict, and a ledger that adds up sessions."""

from __future__ import annotations

import pytest

from training.cost import CostLedger, Rate, budget_verdict, hourly_rate, lookup_gpu, pod_rate
from training.errors import UserError


@pytest.mark.parametrize("device, rate", [
    ("NVIDIA GeForce RTX 3090", 0.25),
    ("NVIDIA GeForce RTX 4090", 0.40),
    ("NVIDIA A100-SXM4-80GB", 1.50),
    ("NVIDIA A100 80GB PCIe", 1.50),
    ("NVIDIA A100-SXM4-40GB", 1.10),
    ("NVIDIA H100 80GB HBM3", 2.50),
    ("NVIDIA H100 PCIe", 2.50),
    ("NVIDIA L40S", 0.70),
    ("NVIDIA L4", 0.30),
    ("Tesla T4", None),
])
def test_rate_table_matches_device_names(device, rate):
    assert lookup_gpu(device) == rate


@pytest.mark.parametrize("gpu, count, config_rate, env, expected", [
    ("NVIDIA H100 80GB HBM3", 1, -1.0, None, 2.50),
    ("NVIDIA H100 80GB HBM3", 4, -1.0, None, 10.0),       # every GPU counts
    ("NVIDIA H100 80GB HBM3", 2, -1.0, "3.0", 6.0),       # GPU_HOURLY_RATE replaces the table
    ("NVIDIA H100 80GB HBM3", 2, 1.25, "3.0", 2.5),       # the experiment's own rate wins
    (None, 0, -1.0, None, 0.0),                           # CPU: free
    (None, 0, -1.0, "36000", 36000.0),                    # unless a rate is given
    ("Tesla T4", 1, -1.0, None, 0.0),                     # unknown GPU: 0, with a warning
])
def test_hourly_rate_precedence(gpu, count, config_rate, env, expected):
    assert hourly_rate(gpu, count, config_rate, env).usd_per_hour == pytest.approx(expected)


def test_bad_env_rate_is_named():
    with pytest.raises(ValueError, match="GPU_HOURLY_RATE='cheap'"):
        hourly_rate(None, 0, -1.0, "cheap")


@pytest.mark.parametrize("cost, cap, warned, verdict", [
    (5.0, 10.0, False, "ok"),
    (9.0, 10.0, False, "warn"),
    (9.5, 10.0, True, "ok"),       # warned once already
    (10.0, 10.0, False, "stop"),
    (12.0, 10.0, True, "stop"),
    (1e9, 0.0, False, "ok"),       # cap 0 = no cap
])
def test_budget_verdict(cost, cap, warned, verdict):
    assert budget_verdict(cost, cap, warned) == verdict


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_ledger_adds_up_every_session_including_lost_work(tmp_path):
    clock = Clock()
    first = CostLedger(str(tmp_path), Rate(3600.0, "1 USD/s"), clock=clock)
    clock.now = 10.0
    first.save()  # the process is killed after this: its 10 s are still paid for
    clock.now = 100.0
    second = CostLedger(str(tmp_path), Rate(7200.0, "2 USD/s"), clock=clock)
    assert second.previous_usd() == pytest.approx(10.0)
    clock.now = 105.0
    assert second.total_usd() == pytest.approx(10.0 + 5 * 2.0)
    second.mark_warned()
    assert CostLedger(str(tmp_path), Rate(0, "free"), clock=clock).warned


# --- inside a pod: the pod's own rate from RunPod's API, launch's price, then the table ----------------

def test_a_pod_is_priced_at_its_own_rate_from_runpods_api(monkeypatch):
    from fake_runpod import API_KEY, FakeRunPod

    monkeypatch.setenv("RETRY_WAIT_SECONDS", "0.01")
    with FakeRunPod() as api:
        pod = api.add_pod("exp-x", cost=1.38, gpu="NVIDIA A100 80GB PCIe")  # two GPUs' worth: cost covers them all
        environ = {"RUNPOD_API_BASE_URL": api.url, "RUNPOD_API_KEY": API_KEY, "RUNPOD_POD_ID": pod,
                   "POD_HOURLY_RATE": "0.69"}
        monkeypatch.setenv("RUNPOD_API_BASE_URL", api.url)
        rate = pod_rate(environ)
        assert rate == Rate(1.38, f"pod {pod}'s own rate from RunPod's API")
        assert api.routes() == [f"GET /v2/pods/{pod}"] and api.requests[0]["authorization"] == f"Bearer {API_KEY}"
        # The pod's rate is not multiplied again by the GPU count, and beats the table (1.50 x 2).
        assert hourly_rate("NVIDIA A100 80GB PCIe", 2, -1.0, None, pod=rate).usd_per_hour == 1.38
        assert hourly_rate("NVIDIA A100 80GB PCIe", 2, -1.0, "2.0", pod=rate).usd_per_hour == 4.0  # explicit wins

        api.fail(f"GET /v2/pods/{pod}", 404, message="The requested Pod does not exist.")
        assert pod_rate(environ) == Rate(0.69, "POD_HOURLY_RATE=0.69 (the price launch got)")
        api.fail(f"GET /v2/pods/{pod}", 403, message="key not scoped to this pod")
        assert pod_rate({**environ, "POD_HOURLY_RATE": ""}) is None  # then the table decides


def test_launchs_price_when_the_api_is_unreachable_and_nothing_outside_a_pod(monkeypatch):
    monkeypatch.setenv("RETRY_WAIT_SECONDS", "0.01")
    monkeypatch.setenv("RUNPOD_API_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing answers
    environ = {"RUNPOD_POD_ID": "pod1", "RUNPOD_API_KEY": "k", "POD_HOURLY_RATE": "0.35"}
    assert pod_rate(environ).usd_per_hour == 0.35
    assert pod_rate({}) is None
    with pytest.raises(UserError, match="POD_HOURLY_RATE='cheap': must be the pod's USD per hour"):
        pod_rate({"POD_HOURLY_RATE": "cheap"})
