"""The one timestamp format of every file the harness writes: UTC, ISO 8601, to the second."""

from __future__ import annotations

import calendar
import time

UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    """Now, e.g. 2026-12-01T12:03:32Z."""
    return time.strftime(UTC_FORMAT, time.gmtime())


def parse_utc(text) -> float | None:
    """Epoch seconds of a utc_now() timestamp, or None when `text` is not one."""
    try:
        return float(calendar.timegm(time.strptime(str(text), UTC_FORMAT)))
    except ValueError:
        return None
