"""What counts as an eval_loss: a finite number. NaN and ±inf (a diverged or overflowed
evaluation) are "no eval_loss" in every policy that reads one: retention, best tracking and
early stopping. Otherwise NaN, which compares false with everything, would sort as a number,
become a best that nothing beats, and hide every later improvement."""

from __future__ import annotations

import math


def usable(loss) -> float | None:
    """`loss` if it is a finite number, else None."""
    if isinstance(loss, (int, float)) and not isinstance(loss, bool) and math.isfinite(loss):
        return float(loss)
    return None


def best_after(best: float | None, best_step: int | None, loss, step: int) -> tuple[float | None, int | None]:
    """(best eval_loss, its step) after an evaluation at `step`; ties keep the earlier one."""
    loss = usable(loss)
    if loss is not None and (best is None or loss < best):
        return loss, step
    return best, best_step
