"""Cost: the rate table, which rate wins (a pod's own rate from RunPod's API first), the budget verdict, and a ledger that adds up sessions."""

from __future__ import annotations

import json
import time

import pytest
from test_preflight import table

from conftest import fake_gpu, train, train_here
from training.cost import LEDGER_FILE, CostLedger, budget_verdict, hourly_rate, pod_started_at, read_ledger
from training.errors import UserError
from training.runpod.prices import ON_DEMAND, SPOT, Rate, lookup_gpu, pod_pricing, pod_rate


@pytest.mark.parametrize("device, pricing, rate", [
    ("NVIDIA GeForce RTX 3090", SPOT, 0.25),
    ("NVIDIA GeForce RTX 4090", SPOT, 0.40),
    ("NVIDIA GeForce RTX 4090", ON_DEMAND, 0.69),   # on-demand pods pay on-demand rates
    ("NVIDIA A100-SXM4-80GB", SPOT, 1.50),
    ("NVIDIA A100 80GB PCIe", ON_DEMAND, 1.64),
    ("NVIDIA A100-SXM4-40GB", SPOT, 1.10),
    ("NVIDIA H100 80GB HBM3", SPOT, 2.50),
    ("NVIDIA H100 PCIe", ON_DEMAND, 2.79),
    ("NVIDIA L40S", SPOT, 0.70),
    ("NVIDIA L4", SPOT, 0.30),
    ("NVIDIA L40", SPOT, 0.69),                     # not "L4"
    ("NVIDIA RTX A4000", ON_DEMAND, 0.25),          # not "A40"
    ("NVIDIA  RTX  A4000 ", ON_DEMAND, 0.25),       # spacing and case aside, the whole name
    ("nvidia a40", ON_DEMAND, 0.44),
    ("Tesla T4", ON_DEMAND, None),
    ("NVIDIA A100", ON_DEMAND, None),               # which A100? not guessed
])
def test_rate_table_matches_whole_device_names(device, pricing, rate):
    assert lookup_gpu(device, pricing) == rate


@pytest.mark.parametrize("gpu, count, config_rate, env, pricing, cap, expected", [
    ("NVIDIA H100 80GB HBM3", 1, -1.0, None, ON_DEMAND, 10.0, 2.99),
    ("NVIDIA H100 80GB HBM3", 4, -1.0, None, SPOT, 10.0, 10.0),     # every GPU counts
    ("NVIDIA H100 80GB HBM3", 2, -1.0, "3.0", ON_DEMAND, 10.0, 6.0),  # GPU_HOURLY_RATE replaces the table
    ("NVIDIA H100 80GB HBM3", 2, 1.25, "3.0", ON_DEMAND, 10.0, 2.5),  # the experiment's own rate wins
    (None, 0, -1.0, None, ON_DEMAND, 10.0, 0.0),                   # CPU: free
    (None, 0, -1.0, "36000", ON_DEMAND, 10.0, 36000.0),            # unless a rate is given
    ("Tesla T4", 1, -1.0, None, ON_DEMAND, 0.0, 0.0),              # unknown GPU without a cap: 0, warned
    ("Tesla T4", 1, -1.0, "0.2", ON_DEMAND, 10.0, 0.2),            # unknown GPU with a rate: fine
])
def test_hourly_rate_precedence(gpu, count, config_rate, env, pricing, cap, expected):
    assert hourly_rate(gpu, count, config_rate, env, pricing, cap).usd_per_hour == pytest.approx(expected)


def test_unknown_gpu_under_a_budget_cap_is_refused():
    with pytest.raises(ValueError, match="'Tesla T4' is not in the rate table .* budget_cap=10 cannot be enforced"):
        hourly_rate("Tesla T4", 1, -1.0, None, ON_DEMAND, budget_cap=10.0)


@pytest.mark.parametrize("env, words", [("cheap", "GPU_HOURLY_RATE='cheap'"), ("nan", "GPU_HOURLY_RATE='nan'"),
                                        ("-1", "GPU_HOURLY_RATE='-1'")])
def test_bad_env_rate_is_named(env, words):
    with pytest.raises(ValueError, match=words):
        hourly_rate(None, 0, -1.0, env)


def test_pod_pricing():
    assert pod_pricing(None) == pod_pricing("") == ON_DEMAND  # unknown: the higher rate
    assert pod_pricing(" Spot ") == SPOT
    with pytest.raises(ValueError, match="POD_PRICING='interruptible': must be 'spot' or 'on-demand'"):
        pod_pricing("interruptible")


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
        environ = {"RUNPOD_API_KEY": API_KEY, "RUNPOD_POD_ID": pod, "POD_HOURLY_RATE": "0.69"}
        monkeypatch.setenv("RUNPOD_API_BASE_URL", api.url)  # runpod_client reads it from the process environment
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


@pytest.mark.parametrize("content, words", [
    ("{not json", "JSONDecodeError"),
    ('{"budget_warned": true}', "no list of sessions"),
    ('{"sessions": [{"seconds": "ten", "usd_per_hour": 1.0}]}', "session 1 has no valid seconds"),
    ('{"sessions": [{"seconds": 10, "usd_per_hour": -2}]}', "session 1 has no valid seconds"),
    ("[]", "no list of sessions"),
])
def test_an_unreadable_ledger_is_an_error_never_a_fresh_start(tmp_path, content, words):
    (tmp_path / LEDGER_FILE).write_text(content)
    with pytest.raises(ValueError, match=words) as error:
        CostLedger(str(tmp_path), Rate(1.0, "x"))
    assert "cannot be read" in str(error.value) and "restore it" in str(error.value)
    assert (tmp_path / LEDGER_FILE).read_text() == content  # left as it was, for the user to restore
    assert read_ledger(str(tmp_path / "none-yet")) == {"sessions": [], "budget_warned": False}


def test_a_pod_start_counts_from_the_pods_start_once(tmp_path):
    clock, wall = Clock(), lambda: 10_000.0
    first = CostLedger(str(tmp_path), Rate(3600.0, "1 USD/s"), clock=clock, pod_started=9_400.0, wall=wall)
    assert first.total_usd() == pytest.approx(600.0)  # clone, install, download: billed too
    clock.now = 5.0
    first.save()
    # a second trainer in the same pod start (a manual rerun) counts from its own start
    second = CostLedger(str(tmp_path), Rate(3600.0, "1 USD/s"), clock=clock, pod_started=9_400.0, wall=wall)
    assert second.total_usd() == pytest.approx(605.0)
    assert read_ledger(str(tmp_path))["sessions"][0]["before_training_seconds"] == 600.0


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), ("1700000000", 1700000000.0)])
def test_pod_started_at(value, expected):
    assert pod_started_at(value, now=1_800_000_000.0) == expected


@pytest.mark.parametrize("value", ["yesterday", "inf", "1900000000"])  # not a number, not a past time
def test_pod_started_at_must_be_a_past_unix_time(value):
    with pytest.raises(ValueError, match="POD_STARTED_AT="):
        pod_started_at(value, now=1_800_000_000.0)


# --- the CLI ---------------------------------------------------------------------------------------

def test_train_refuses_an_unreadable_ledger_before_training(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LEDGER_FILE).write_text('{"sessions": [{"seconds": 3600, "usd_per_hour": 2.5}')  # cut short
    result = train_here(out)
    assert result.returncode == 2, result.stdout + result.stderr
    assert table(result.stdout)["cost"] == "FAIL" and "cost_ledger.json cannot be read" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [LEDGER_FILE]  # nothing written, the ledger kept


@pytest.mark.parametrize("gpu, env, ok, words", [
    ("Tesla T4", {}, False, "'Tesla T4' is not in the rate table"),
    ("Tesla T4", {"GPU_HOURLY_RATE": "0.2"}, True, "GPU_HOURLY_RATE=0.2 x 1"),
    ("NVIDIA L40", {}, True, "NVIDIA L40 at 0.99 x 1 (on-demand rate table)"),
    ("NVIDIA L40", {"POD_PRICING": "spot"}, True, "NVIDIA L40 at 0.69 x 1 (spot rate table)"),
])
def test_preflight_prices_the_gpu_it_sees(tmp_path, gpu, env, ok, words):
    # The transformers backend: with CUDA faked, auto would take unsloth, which cannot import on this CPU.
    result = train(tmp_path / "run", "budget_cap=10", "backend=transformers", extra=("--preflight-only",),
                   env={**fake_gpu(tmp_path / "fakes", gpu), **env})
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    assert table(result.stdout)["cost"] == ("ok" if ok else "FAIL") and words in result.stdout
    assert not (tmp_path / "run").exists()


def test_time_before_training_is_paid_for(tmp_path, monkeypatch):
    # The pod started an hour ago at 12 USD/h: the cap of 10 USD is spent before the first step ends.
    monkeypatch.setenv("POD_STARTED_AT", str(int(time.time()) - 3600))
    monkeypatch.setenv("GPU_HOURLY_RATE", "12")
    out = tmp_path / "run"
    result = train_here(out, "budget_cap=10", "max_steps=5", "eval_steps=100", "save_steps=100")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "stopped by budget_cap at step 1" in result.stdout
    session = json.loads((out / LEDGER_FILE).read_text())["sessions"][0]
    assert 3599 <= session["before_training_seconds"] < 3700 and session["seconds"] >= 3600
