"""Retention policy, table-driven: which checkpoints survive a save."""

from __future__ import annotations

import pytest

from training.checkpointing.checkpoints import CheckpointInfo
from training.checkpointing.retention import checkpoints_to_delete, checkpoints_to_keep

NAN, INF = float("nan"), float("inf")


def ckpts(*pairs):
    return [CheckpointInfo(step, f"/x/checkpoint-{step}", loss) for step, loss in pairs]


@pytest.mark.parametrize("pairs, keep_best, keep_recent, kept", [
    # best by eval_loss and recent by step, independently; the union is kept
    ([(10, 0.9), (20, 0.5), (30, 0.7), (40, 0.8)], 1, 1, {20, 40}),
    ([(10, 0.9), (20, 0.5), (30, 0.7), (40, 0.8)], 2, 2, {20, 30, 40}),
    # a checkpoint in both sets counts once: nothing else is kept to fill the gap
    ([(10, 0.9), (20, 0.8), (30, 0.1)], 1, 1, {30}),
    # ties on eval_loss go to the newer checkpoint
    ([(10, 0.5), (20, 0.5), (30, 0.9)], 1, 1, {20, 30}),
    # checkpoints without eval_loss are never best, but can be recent
    ([(10, None), (20, 0.4), (30, None)], 1, 1, {20, 30}),
    ([(10, None), (20, None), (30, None)], 3, 1, {30}),
    # keep_best=0: only the recent ones
    ([(10, 0.1), (20, 0.5), (30, 0.9)], 0, 2, {20, 30}),
    # keep_recent=0: the best, and still the newest (what a resume continues from)
    ([(10, 0.1), (20, 0.5), (30, 0.9)], 1, 0, {10, 30}),
    # both 0: the newest alone
    ([(10, 0.1), (20, 0.5), (30, 0.9)], 0, 0, {30}),
    # more to keep than exist
    ([(10, 0.1), (20, 0.5)], 5, 5, {10, 20}),
    ([], 5, 5, set()),
    # a non-finite eval_loss is no eval_loss: never best, never pushing the true best out
    ([(10, 0.5), (20, NAN), (30, 0.9), (40, 0.8)], 1, 1, {10, 40}),
    ([(10, NAN), (20, 0.7), (30, INF), (40, -INF), (50, 0.9)], 2, 1, {20, 50}),
    ([(10, NAN), (20, NAN), (30, 0.9)], 1, 0, {30}),
])
def test_checkpoints_to_keep(pairs, keep_best, keep_recent, kept):
    assert checkpoints_to_keep(ckpts(*pairs), keep_best, keep_recent) == kept


def test_delete_is_the_complement_in_step_order():
    all_ = ckpts((30, 0.2), (10, 0.9), (20, 0.5), (40, 0.8))
    assert [c.step for c in checkpoints_to_delete(all_, 1, 1)] == [10, 20]


def test_newest_is_never_deleted_whatever_the_order_given():
    for keep_best in range(3):
        for keep_recent in range(3):
            doomed = checkpoints_to_delete(ckpts((50, 9.0), (10, 0.1), (30, 0.2)), keep_best, keep_recent)
            assert 50 not in {c.step for c in doomed}
