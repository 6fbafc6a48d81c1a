"""`metrics.jsonl`: one JSON object per logged event, written whether or not W&B is on.
Plain file functions, light to import (the experiment CLI reads runs with them)."""

from __future__ import annotations

import json
import math
import os

METRICS_FILE = "metrics.jsonl"


def append_event(path: str, event: dict) -> None:
    # One write per line and a flush: a reader (or a crash) never sees half an event.
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(event, sort_keys=True, allow_nan=False) + "\n")
        out.flush()


def clean(value):
    """JSON-safe scalar: tensors and numpy numbers as Python numbers, NaN/inf as None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_events(path: str) -> list[dict]:
    """Every complete event in a metrics file; a torn last line (killed mid-write) is skipped."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as source:
        return parse_events(source.read())


def parse_events(text: str) -> list[dict]:
    """The events of a metrics file's text, wherever it was read from; torn lines are skipped."""
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def drop_torn_tail(path: str) -> None:
    """Cut a last line left half-written by a killed run, so the next event starts a fresh line."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)
