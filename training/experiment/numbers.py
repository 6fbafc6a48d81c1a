"""The ranges of the commands' numeric options, in one table, checked right after parsing: before
any file, directory, database row or request is made. Every number must be finite and in its range;
each one that is not is one `error:` line naming the option, the value and the range (exit 2).

A range is (low, high, what 0 means or None); 0 is allowed besides [low, high] when it means "off".
"""

from __future__ import annotations

import math
from argparse import Namespace

from training.errors import UserError

RANGES = {
    # option: (attribute, low, high, what 0 means, or None when 0 is not allowed below low)
    "--max-pods": ("max_pods", 1, 100, None),
    "--budget": ("budget", 0.01, 100_000, "no sweep budget"),
    "--escalate-after": ("escalate_after", 1, 100, None),
    "--max-attempts": ("max_attempts", 1, 100, None),
    "--max-preemptions": ("max_preemptions", 1, 1000, None),
    "--bid": ("bid", 0.01, 100, None),
    "--poll": ("poll", 5, 3600, None),
    "--retry-wait": ("retry_wait", 0, 86_400, None),
    "--unreachable-minutes": ("unreachable_minutes", 1, 10_080, None),
    "--priority": ("priority", -1_000_000, 1_000_000, None),
    "--max-lifetime-hours": ("max_lifetime_hours", 0.1, 720, "no limit"),
    # The idle watcher reads the GPU once a minute: a few readings are the least that means idle.
    "--idle-stop-minutes": ("idle_stop_minutes", 5, 1440, "never"),
}


def problems(args: Namespace, required_nonzero: tuple[str, ...] = ()) -> list[str]:
    """One line per numeric option of `args` that is not finite and in range; `required_nonzero`:
    options whose "off" (0) this command does not take."""
    found = []
    for option, (attribute, low, high, zero) in RANGES.items():
        value = getattr(args, attribute, None)
        if value is None:
            continue
        off_allowed = zero is not None and option not in required_nonzero
        if isinstance(value, float) and not math.isfinite(value):
            ok = False
        else:
            ok = low <= value <= high or (off_allowed and value == 0)
        if not ok:
            span = f"between {low:g} and {high:g}" + (f", or 0 ({zero})" if off_allowed else "")
            found.append(f"{option} {value!r}: must be a number {span}")
    return found


def check(args: Namespace, required_nonzero: tuple[str, ...] = ()) -> None:
    found = problems(args, required_nonzero)
    if found:
        raise UserError(*found)
