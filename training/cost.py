"""What a run costs: the hourly rate of the GPUs it holds, a ledger of every session's device time
(so preemptions and resumes add up, and work lost to a kill is still paid for), and the budget cap.

No transformers here (preflight reads rates and the ledger before anything heavy is imported): the
callback that applies the cap during training is training.budget's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass

from training.run_status import write_json_atomic
from training.timestamps import utc_now

log = logging.getLogger("training")

LEDGER_FILE = "cost_ledger.json"
WARN_FRACTION = 0.9
SPOT, ON_DEMAND = "spot", "on-demand"
# Set by `launch` on the pods it rents: how RunPod bills this pod. Unset = on-demand, the higher
# rate, so that a budget is never counted short.
PRICING_VAR = "POD_PRICING"
POD_RATE_ENV = "POD_HOURLY_RATE"  # launch's price for the whole pod, USD per hour: the fallback of its own
# Set by setup_pod.sh: the Unix time this pod (re)started. A pod bills from its start, so the
# clone, the install and the model download before training are paid for too.
STARTED_VAR = "POD_STARTED_AT"
# RunPod prices in USD per GPU-hour, (spot, on-demand), late 2026, rounded up: the last resort
# when no rate is given. Keyed by the exact name torch.cuda.get_device_name() reports (which is
# also RunPod's GPU type id); matched whole, so "NVIDIA L40" is never priced as "NVIDIA L4".
RATE_TABLE = {
    "NVIDIA GeForce RTX 3090": (0.25, 0.46),
    "NVIDIA GeForce RTX 4090": (0.40, 0.69),
    "NVIDIA GeForce RTX 5090": (0.69, 0.94),
    "NVIDIA RTX A4000": (0.17, 0.25),
    "NVIDIA RTX A5000": (0.17, 0.27),
    "NVIDIA RTX A6000": (0.35, 0.49),
    "NVIDIA RTX 6000 Ada Generation": (0.55, 0.77),
    "NVIDIA L4": (0.30, 0.44),
    "NVIDIA L40": (0.69, 0.99),
    "NVIDIA L40S": (0.70, 0.86),
    "NVIDIA A40": (0.35, 0.44),
    "NVIDIA A100-PCIE-40GB": (1.10, 1.39),
    "NVIDIA A100-SXM4-40GB": (1.10, 1.39),
    "NVIDIA A100 80GB PCIe": (1.50, 1.64),
    "NVIDIA A100-SXM4-80GB": (1.50, 1.74),
    "NVIDIA H100 PCIe": (2.50, 2.79),
    "NVIDIA H100 80GB HBM3": (2.50, 2.99),
    "NVIDIA H100 NVL": (2.50, 3.07),
    "NVIDIA H200": (3.60, 3.99),
}


@dataclass(frozen=True)
class Rate:
    usd_per_hour: float  # for all the GPUs of the run together
    source: str  # how it was decided, for the log


def _normalised(gpu_name: str) -> str:
    return " ".join(gpu_name.split()).casefold()


_BY_NAME = {_normalised(name): prices for name, prices in RATE_TABLE.items()}


def lookup_gpu(gpu_name: str, pricing: str = ON_DEMAND) -> float | None:
    """The table's USD per GPU-hour for exactly this GPU model (spaces and case aside), or None."""
    prices = _BY_NAME.get(_normalised(gpu_name))
    return None if prices is None else prices[0 if pricing == SPOT else 1]


def pod_pricing(value: str | None) -> str:
    """POD_PRICING: "spot" or "on-demand" (the default)."""
    value = (value or ON_DEMAND).strip().lower()
    if value not in (SPOT, ON_DEMAND):
        raise ValueError(f"{PRICING_VAR}={value!r}: must be {SPOT!r} or {ON_DEMAND!r} (launch sets it)")
    return value


def usd_rate(raw: str) -> float | None:
    """A rate given in the environment as a finite number of USD >= 0, else None."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def pod_rate(environ=os.environ) -> Rate | None:
    """What this RunPod pod bills, USD per hour for all its GPUs: its own rate (`cost`) read from
    RunPod's API with RUNPOD_POD_ID and RUNPOD_API_KEY, else POD_HOURLY_RATE (the price `launch` got
    when it rented the pod); None outside a pod or when neither is known (the table decides then)."""
    from training.errors import UserError
    from training.experiment import runpod_client

    pod_id, key = environ.get("RUNPOD_POD_ID", "").strip(), environ.get("RUNPOD_API_KEY", "").strip()
    if pod_id and key:
        try:
            rate = runpod_client.pod_rate(runpod_client.Api(key).pod(pod_id))
            if rate is not None:
                return Rate(rate, f"pod {pod_id}'s own rate from RunPod's API")
            log.warning("cost: RunPod's API gave pod %s no rate (not running yet?)", pod_id)
        except UserError as error:
            log.warning("cost: could not read pod %s's rate from RunPod's API (%s)", pod_id, error)
    raw = environ.get(POD_RATE_ENV, "").strip()
    if not raw:
        return None
    value = usd_rate(raw)
    if value is None:
        raise UserError(f"{POD_RATE_ENV}={raw!r}: must be the pod's USD per hour >= 0 (launch sets it)")
    return Rate(value, f"{POD_RATE_ENV}={value} (the price launch got)")


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
