"""RunPod's prices: the rate table by GPU model (spot, on-demand), how a pod is billed (POD_PRICING),
and a pod's own rate (from RunPod's API, else the price launch got). Used by launch on the laptop and
by the cost meter on the pod; nothing heavy is imported here."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

log = logging.getLogger("training")

SPOT, ON_DEMAND = "spot", "on-demand"
# Set by `launch` on the pods it rents: how RunPod bills this pod. Unset = on-demand, the higher
# rate, so that a budget is never counted short.
PRICING_VAR = "POD_PRICING"
POD_RATE_ENV = "POD_HOURLY_RATE"  # launch's price for the whole pod, USD per hour: the fallback of its own
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
    from training.runpod import client as runpod_client

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
