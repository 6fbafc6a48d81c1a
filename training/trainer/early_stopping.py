"""Early stopping on an eval_loss plateau, as pure functions over the state a checkpoint keeps."""

from __future__ import annotations

from training.checkpointing.eval_loss import usable


def after_evaluation(reference: float | None, bad_evals: int, eval_loss: float, min_delta: float) -> tuple[float, int]:
    """(new reference, evaluations without improvement): an evaluation improves when it beats the
    reference by more than min_delta; only then does it become the new reference. A non-finite
    eval_loss is no eval_loss (training.checkpointing.eval_loss): nothing changes."""
    if usable(eval_loss) is None:
        return reference, bad_evals
    if reference is None or eval_loss < reference - min_delta:
        return eval_loss, 0
    return reference, bad_evals + 1


def should_stop(bad_evals: int, patience: int) -> bool:
    return patience > 0 and bad_evals >= patience
