"""What a run costs: the hourly rate of the GPUs it holds (priced by training.runpod.prices), a
ledger of every session's device time (so preemptions and resumes add up, and work lost to a kill is
still paid for), and the budget cap.

No transformers here (preflight reads rates and the ledger before anything heavy is imported): the
callback that applies the cap during training is training.trainer.budget's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

from training.checkpointing.save import write_json_atomic
from training.runpod.prices import ON_DEMAND, PRICING_VAR, Rate, lookup_gpu, pod_pricing, usd_rate
from training.timestamps import utc_now

log = logging.getLogger("training")

LEDGER_FILE = "cost_ledger.json"
WARN_FRACTION = 0.9  # of a budget: the one warning before the stop (the run's cap and the fleet's budget)
# Set by setup_pod.sh: the Unix time this pod (re)started. A pod bills from its start, so the
# clone, the install and the model download before training are paid for too.
STARTED_VAR = "POD_STARTED_AT"
def hourly_rate(gpu_name: str | None, gpu_count: int, config_rate: float, env_rate: str | None,
                pricing: str = ON_DEMAND, budget_cap: float = 0.0, pod: Rate | None = None) -> Rate:
    """USD per hour for the run: config's gpu_hourly_rate, else GPU_HOURLY_RATE, else the pod's own
    rate (`pod_rate`, already for all its GPUs), else the table at the pod's pricing; times the GPU
    count. A CPU run costs nothing unless a rate is given (then it counts as one). A GPU with no
    rate fails under a budget cap: a cap that counts $0/h keeps nothing."""
    count = max(gpu_count, 1)
    if config_rate >= 0:
        return Rate(config_rate * count, f"gpu_hourly_rate={config_rate} x {count}")
    if env_rate:
        value = usd_rate(env_rate)
        if value is None:
            raise ValueError(f"GPU_HOURLY_RATE={env_rate!r}: must be a number of USD per GPU-hour >= 0")
        return Rate(value * count, f"GPU_HOURLY_RATE={value} x {count}")
    if pod is not None:
        return pod
    if not gpu_name:
        return Rate(0.0, "no GPU: free unless gpu_hourly_rate or GPU_HOURLY_RATE is set")
    per_gpu = lookup_gpu(gpu_name, pricing)
    if per_gpu is None:
        if budget_cap > 0:
            raise ValueError(f"GPU {gpu_name!r} is not in the rate table and no rate was given, so budget_cap="
                             f"{budget_cap:g} cannot be enforced: set GPU_HOURLY_RATE (USD per GPU-hour) or "
                             "gpu_hourly_rate, or budget_cap=0 to run without a cap")
        log.warning("GPU %r is not in the rate table: cost counts as 0 (budget_cap=0: no cap); set GPU_HOURLY_RATE",
                    gpu_name)
        return Rate(0.0, f"{gpu_name}: not in the rate table")
    return Rate(per_gpu * gpu_count, f"{gpu_name} at {per_gpu} x {gpu_count} ({pricing} rate table)")


def gpu_info() -> tuple[str | None, int]:
    """The GPU model and how many devices this run holds: every rank's under torchrun (a CPU
    rank counts as one, so a rate given for CPU runs is paid per process), else all visible GPUs."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not torch.cuda.is_available():
        return None, world if world > 1 else 0
    return torch.cuda.get_device_name(0), world if world > 1 else torch.cuda.device_count()


def run_rate(config, environ=os.environ, pod: Rate | None = None) -> Rate:
    """The rate this run is billed at: its config, its environment, the pod's own rate (`pod_rate`,
    read by the caller: it asks RunPod's API) and the GPUs it holds."""
    name, count = gpu_info()
    return hourly_rate(name, count, config.gpu_hourly_rate, environ.get("GPU_HOURLY_RATE"),
                       pod_pricing(environ.get(PRICING_VAR)), config.budget_cap, pod=pod)


def gpu_label() -> str:
    """'2 x NVIDIA H100 80GB HBM3', or 'CPU'."""
    name, count = gpu_info()
    return f"{count} x {name}" if name else "CPU"


def budget_verdict(cost_usd: float, cap_usd: float, warned: bool) -> str:
    """"ok", "warn" (first time past 90% of the cap) or "stop" (cap reached); cap 0 = no cap."""
    if cap_usd <= 0:
        return "ok"
    if cost_usd >= cap_usd:
        return "stop"
    if cost_usd >= WARN_FRACTION * cap_usd and not warned:
        return "warn"
    return "ok"


def session_usd(sessions) -> float:
    return sum(s["seconds"] * s["usd_per_hour"] / 3600 for s in sessions)


def read_ledger(output_dir: str) -> dict:
    """The ledger of output_dir: {"sessions": [...], "budget_warned": bool}; empty when there is
    none yet. One that exists but cannot be read is an error, never a fresh start: it holds what
    the experiment has spent, and without it the budget cap would start again from 0."""
    path = os.path.join(output_dir, LEDGER_FILE)
    try:
        with open(path, encoding="utf-8") as source:
            data = json.load(source)
    except FileNotFoundError:
        return {"sessions": [], "budget_warned": False}
    except (OSError, ValueError) as error:
        raise ValueError(_unreadable(path, f"{type(error).__name__}: {error}")) from None
    sessions = data.get("sessions") if isinstance(data, dict) else None
    if not isinstance(sessions, list):
        raise ValueError(_unreadable(path, "no list of sessions in it"))
    for number, session in enumerate(sessions, start=1):
        numbers = [session.get(key) if isinstance(session, dict) else None for key in ("seconds", "usd_per_hour")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                   for v in numbers):
            raise ValueError(_unreadable(path, f"session {number} has no valid seconds and usd_per_hour"))
    return data


def _unreadable(path: str, why: str) -> str:
    return (f"{path} cannot be read ({why}): it records what this experiment has spent, so budget_cap "
            "cannot be enforced without it; restore it, or delete it to accept that the spending it recorded "
            "is forgotten")


def pod_started_at(value: str | None, now: float) -> float | None:
    """POD_STARTED_AT as a Unix time, None when unset; a value that is no past time is an error."""
    if not value:
        return None
    try:
        started = float(value)
    except ValueError:
        started = math.nan
    if not math.isfinite(started) or started > now + 60:
        raise ValueError(f"{STARTED_VAR}={value!r}: must be the Unix time the pod started (setup_pod.sh sets it)")
    return started


class CostLedger:
    """`cost_ledger.json` in output_dir: one entry per process that trained, with its device time
    and rate, rewritten as the run goes. The total is what the experiment has cost so far.

    With `pod_started` (POD_STARTED_AT) the first session of that pod start counts from the pod's
    start, which is when billing began; a second trainer in the same pod start counts from its own."""

    def __init__(self, output_dir: str, rate: Rate, clock=time.monotonic, pod_started: float | None = None,
                 wall=time.time):
        self.path = os.path.join(output_dir, LEDGER_FILE)
        self.clock = clock
        self.data = read_ledger(output_dir)
        self.session = {"started_at": utc_now(), "seconds": 0.0,
                        "usd_per_hour": rate.usd_per_hour, "gpu": gpu_label()}  # the model card lists it
        before = 0.0
        if pod_started is not None:
            counted = any(s.get("pod_started_at") == pod_started for s in self.data["sessions"])
            before = 0.0 if counted else max(wall() - pod_started, 0.0)
            self.session.update(pod_started_at=pod_started, before_training_seconds=round(before, 3))
        self.data["sessions"].append(self.session)
        self.began = clock() - before

    @property
    def warned(self) -> bool:
        return bool(self.data.get("budget_warned"))

    def mark_warned(self) -> None:
        self.data["budget_warned"] = True
        self.save()

    def total_usd(self) -> float:
        self.session["seconds"] = self.clock() - self.began
        return session_usd(self.data["sessions"])

    def previous_usd(self) -> float:
        return session_usd(s for s in self.data["sessions"] if s is not self.session)

    def save(self) -> None:
        self.total_usd()
        write_json_atomic(self.path, self.data)


class BudgetSpent(Exception):
    """The experiment had spent its budget_cap before this run started: exit 3, nothing trained."""


def open_meter(config, pod: Rate | None = None, environ=os.environ) -> CostMeter:
    """The cost tracking of a run: its rate, its ledger (the sessions before it included) and the
    cap. A rate or ledger that cannot be trusted is a UserError (exit 2, before training); a cap
    already reached is BudgetSpent (exit 3). `pod`: the pod's own rate, read by the caller."""
    from training.errors import UserError

    try:  # preflight checked both already; a cost that cannot be trusted still stops here
        rate = run_rate(config, environ, pod=pod)
        ledger = CostLedger(config.output_dir, rate,
                            pod_started=pod_started_at(environ.get(STARTED_VAR), time.time()))
    except ValueError as error:
        raise UserError(str(error)) from None
    spent = ledger.previous_usd()
    log.info("cost: %.2f USD/h (%s); spent so far %.2f USD; budget_cap %s", rate.usd_per_hour, rate.source,
             spent, f"{config.budget_cap:.2f} USD ({config.budget_action})" if config.budget_cap else "none")
    if config.budget_action == "stop" and budget_verdict(spent, config.budget_cap, warned=True) == "stop":
        raise BudgetSpent(f"budget_cap={config.budget_cap}: already spent {spent:.2f} USD on this experiment; "
                          "raise it (--set budget_cap=...) to continue")
    return CostMeter(ledger, rate, config.budget_cap)


class CostMeter:
    """Cost so far, projected cost to finish, and the budget verdict, from the ledger."""

    def __init__(self, ledger: CostLedger, rate: Rate, cap_usd: float):
        self.ledger, self.rate, self.cap_usd = ledger, rate, cap_usd
        self.step_seconds: list[float] = []
        self._last_step_at: float | None = None

    def step_done(self, now: float) -> None:
        if self._last_step_at is not None:
            self.step_seconds.append(now - self._last_step_at)
            del self.step_seconds[:-50]
        self._last_step_at = now

    def snapshot(self) -> tuple[float, float]:
        """(USD, device-hours) spent so far, for the checkpoint state."""
        cost = self.ledger.total_usd()
        hours = sum(s["seconds"] for s in self.ledger.data["sessions"]) / 3600
        return round(cost, 6), round(hours, 6)

    def metrics(self, step: int, max_steps: int) -> dict[str, float]:
        cost = self.ledger.total_usd()
        out = {"cost_usd": round(cost, 6)}
        if self.step_seconds:
            per_step = sorted(self.step_seconds)[len(self.step_seconds) // 2]
            remaining = max(max_steps - step, 0) * per_step * self.rate.usd_per_hour / 3600
            out["projected_cost_usd"] = round(cost + remaining, 6)
        return out
