"""What a run costs: the hourly rate of the GPUs it holds, a ledger of every session's device time
(so preemptions and resumes add up, and work lost to a kill is still paid for), and the budget cap.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

from transformers import TrainerCallback

from training.run_status import write_json_atomic

log = logging.getLogger("training")

LEDGER_FILE = "cost_ledger.json"
WARN_FRACTION = 0.9
# RunPod spot prices in USD per GPU-hour (Secure/Community Cloud, late 2026). Matched against
# torch.cuda.get_device_name(); the longest matching key wins. GPU_HOURLY_RATE or the config's
# gpu_hourly_rate replace the table for pods priced otherwise.
RATE_TABLE = {
    "RTX 3090": 0.25,
    "RTX 4090": 0.40,
    "RTX A5000": 0.17,
    "RTX A6000": 0.35,
    "L4": 0.30,
    "L40S": 0.70,
    "A40": 0.35,
    "A100 40GB": 1.10,
    "A100-SXM4-40GB": 1.10,
    "A100": 1.50,  # the 80 GB parts: "A100 80GB PCIe", "A100-SXM4-80GB"
    "H100": 2.50,
    "H200": 3.60,
}


@dataclass(frozen=True)
class Rate:
    usd_per_hour: float  # for all the GPUs of the run together
    source: str  # how it was decided, for the log


def lookup_gpu(gpu_name: str) -> float | None:
    name = gpu_name.upper().replace("NVIDIA", "").replace("GEFORCE", "")
    matches = [key for key in RATE_TABLE if key.upper() in name]
    return RATE_TABLE[max(matches, key=len)] if matches else None


def hourly_rate(gpu_name: str | None, gpu_count: int, config_rate: float, env_rate: str | None) -> Rate:
    """USD per hour for the run: config's gpu_hourly_rate, else GPU_HOURLY_RATE, else the table;
    times the GPU count. A CPU run costs nothing unless a rate is given (then it counts as one)."""
    count = max(gpu_count, 1)
    if config_rate >= 0:
        return Rate(config_rate * count, f"gpu_hourly_rate={config_rate} x {count}")
    if env_rate:
        try:
            value = float(env_rate)
        except ValueError:
            value = -1.0
        if value < 0:
            raise ValueError(f"GPU_HOURLY_RATE={env_rate!r}: must be a number of USD per GPU-hour >= 0")
        return Rate(value * count, f"GPU_HOURLY_RATE={value} x {count}")
    if not gpu_name:
        return Rate(0.0, "no GPU: free unless gpu_hourly_rate or GPU_HOURLY_RATE is set")
    per_gpu = lookup_gpu(gpu_name)
    if per_gpu is None:
        log.warning("GPU %r is not in the rate table: cost counts as 0; set GPU_HOURLY_RATE", gpu_name)
        return Rate(0.0, f"{gpu_name}: not in the rate table")
    return Rate(per_gpu * gpu_count, f"{gpu_name} at {per_gpu} x {gpu_count} (rate table)")


def gpu_info() -> tuple[str | None, int]:
    """The GPU model and how many devices this run holds: every rank's under torchrun (a CPU
    rank counts as one, so a rate given for CPU runs is paid per process), else all visible GPUs."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not torch.cuda.is_available():
        return None, world if world > 1 else 0
    return torch.cuda.get_device_name(0), world if world > 1 else torch.cuda.device_count()


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


class CostLedger:
    """`cost_ledger.json` in output_dir: one entry per process that trained, with its device time
    and rate, rewritten as the run goes. The total is what the experiment has cost so far."""

    def __init__(self, output_dir: str, rate: Rate, clock=time.monotonic):
        self.path = os.path.join(output_dir, LEDGER_FILE)
        self.clock = clock
        self.data = self._read()
        self.session = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": 0.0,
                        "usd_per_hour": rate.usd_per_hour, "gpu": gpu_label()}  # the model card lists it
        self.data["sessions"].append(self.session)
        self.began = clock()

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as source:
                data = json.load(source)
            if isinstance(data.get("sessions"), list):
                return data
        except (OSError, ValueError):
            pass
        return {"sessions": [], "budget_warned": False}

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


class BudgetCallback(TrainerCallback):
    """Keeps the ledger current, warns once at 90% of budget_cap, and at 100% decides to stop
    (`stopped`; training.preemption saves and stops every rank) or only warns (budget_action="warn")."""

    def __init__(self, meter: CostMeter, action: str, alert=None, clock=time.monotonic):
        self.meter, self.action, self.alert, self.clock = meter, action, alert, clock
        self.stopped = False  # the cap stopped training
        self._cap_reported = False

    def on_step_end(self, args, state, control, **kwargs):
        self.meter.step_done(self.clock())
        if not state.is_world_process_zero:
            return
        ledger = self.meter.ledger
        cost, cap = ledger.total_usd(), self.meter.cap_usd
        verdict = budget_verdict(cost, cap, ledger.warned)
        if verdict != "ok" and not ledger.warned:
            message = f"cost {cost:.2f} USD has passed 90% of budget_cap {cap:.2f} USD at step {state.global_step}"
            log.warning("budget: %s", message)
            if self.alert:
                self.alert("Budget 90% used", message)
            ledger.mark_warned()
        if verdict == "stop" and self.action == "stop" and not self.stopped:
            log.warning("budget: cost %.2f USD reached budget_cap %.2f USD: saving a checkpoint and stopping", cost, cap)
            self.stopped = True
        elif verdict == "stop" and not self._cap_reported:
            log.warning("budget: cost %.2f USD reached budget_cap %.2f USD; training on (budget_action=warn)", cost, cap)
            self._cap_reported = True
        if state.global_step % max(args.logging_steps, 1) == 0:
            ledger.save()

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.meter.ledger.save()
