"""Which checkpoints to keep: a pure policy over (step, eval_loss) pairs, apart from any I/O.

Kept: the `keep_best` lowest eval_loss (checkpoints without one, or with a non-finite one, are
never "best"; ties go to the
newer step), the `keep_recent` newest by step, and always the newest of all, whatever the
settings, since it is what a resume continues from. A checkpoint in both sets counts once.
"""

from __future__ import annotations

from collections.abc import Sequence

from training.checkpointing.checkpoints import CheckpointInfo
from training.checkpointing.eval_loss import usable


def checkpoints_to_keep(checkpoints: Sequence[CheckpointInfo], keep_best: int, keep_recent: int) -> set[int]:
    """Steps of the checkpoints to keep among complete ones."""
    if not checkpoints:
        return set()
    by_step = sorted(checkpoints, key=lambda c: c.step, reverse=True)
    keep = {by_step[0].step}
    keep.update(c.step for c in by_step[:keep_recent])
    rated = [c for c in checkpoints if usable(c.eval_loss) is not None]
    rated.sort(key=lambda c: (c.eval_loss, -c.step))
    keep.update(c.step for c in rated[:keep_best])
    return keep


def checkpoints_to_delete(checkpoints: Sequence[CheckpointInfo], keep_best: int, keep_recent: int) -> list[CheckpointInfo]:
    keep = checkpoints_to_keep(checkpoints, keep_best, keep_recent)
    return [c for c in sorted(checkpoints, key=lambda c: c.step) if c.step not in keep]
