"""Cost: the rate table, which rate wins, the budget verdict, and a ledger that adds up sessions."""

from __future__ import annotations

import pytest

from training.cost import CostLedger, Rate, budget_verdict, hourly_rate, lookup_gpu


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
