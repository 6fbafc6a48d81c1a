"""`run_status.json`: what a run is doing or how it ended, for `experiment status/compare` and humans.

Statuses: running, finished, early_stopped, preempted, budget_stopped, failed.
"""

from __future__ import annotations

import json
import os
import time

STATUS_FILE = "run_status.json"


def write_json_atomic(path: str, payload: dict) -> None:
    """Replace `path` with `payload` so a reader sees the old or the new file, never half of one."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(payload, out, indent=2, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def write_status(output_dir: str, status: str, **fields) -> None:
    payload = {"status": status, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}
    write_json_atomic(os.path.join(output_dir, STATUS_FILE), payload)


def read_status(output_dir: str) -> dict | None:
    try:
        with open(os.path.join(output_dir, STATUS_FILE), encoding="utf-8") as source:
            return json.load(source)
    except (OSError, json.JSONDecodeError):
        return None
