"""The one timestamp format of every file the harness writes: UTC, ISO 8601, to the second."""

from __future__ import annotations

import time

UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    """Now, e.g. 2026-12-01T12:03:32Z."""
    return time.strftime(UTC_FORMAT, time.gmtime())
