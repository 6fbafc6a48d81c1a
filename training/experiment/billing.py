"""What RunPod itself billed for a fleet's pods, beside the controller's own count (`fleet status --billing`).

The controller counts each pod's rate times the time it saw it alive (an upper bound by one poll);
RunPod's REST API v2 bills per time bucket (`GET /v2/billing/pods`: records of podId and totalAmount
in USD, bucketSize hour|day|...). The fleet's queue keeps every pod id an experiment had, so the
records add up per experiment. Where RunPod has no record for a pod (yet) the figure is left out,
not taken as $0: an experiment none of whose pods has a record shows '-'.
"""

from __future__ import annotations

import time

from training.errors import UserError


def billed_by_experiment(api, queue, rows: list[dict]) -> dict[str, float | None] | str:
    """name -> USD RunPod billed for that experiment's pods (None: no record yet), or why it could not be read."""
    pods = queue.pods()
    names = [row["name"] for row in rows]
    if not any(pods.get(name) for name in names):
        return {name: None for name in names}
    first = min(seen for name in names for _, seen in pods.get(name, []))
    # Billing windows snap to the bucket: start at midnight UTC of the first launch, in day buckets.
    start = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(first))
    try:
        records = api.pod_billing(start, "day")
    except UserError as problem:
        return str(problem)
    by_pod: dict[str, float] = {}
    for record in records:
        amount = record.get("totalAmount") if isinstance(record, dict) else None
        if isinstance(amount, (int, float)) and record.get("podId"):
            by_pod[record["podId"]] = by_pod.get(record["podId"], 0.0) + float(amount)
    billed: dict[str, float | None] = {}
    for name in names:
        known = [by_pod[pod_id] for pod_id, _ in pods.get(name, []) if pod_id in by_pod]
        billed[name] = sum(known) if known else None
    return billed
