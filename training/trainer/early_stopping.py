"""Early stopping on an eval_loss plateau: pure functions over the state a checkpoint keeps, and the
callback that applies them after each evaluation."""

from __future__ import annotations

import logging

from transformers import TrainerCallback

from training.checkpointing.eval_loss import best_after, usable

log = logging.getLogger("training")


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


class EarlyStoppingCallback(TrainerCallback):
    """After each evaluation: the plateau count in the harness state (saved with every checkpoint, so
    a resume keeps it), and the stop once it reaches early_stopping_patience (the outcome says why)."""

    def __init__(self, config, harness_state, outcome):
        self.config, self.state, self.outcome = config, harness_state, outcome

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss, harness = usable((metrics or {}).get("eval_loss")), self.state
        if loss is None:  # NaN/inf: no eval_loss, nothing changes
            return
        harness.early_stopping_reference, harness.evals_without_improvement = after_evaluation(
            harness.early_stopping_reference, harness.evals_without_improvement, loss, self.config.early_stopping_min_delta)
        if should_stop(harness.evals_without_improvement, self.config.early_stopping_patience):
            best, best_step = best_after(harness.best_eval_loss, harness.best_step, loss, state.global_step)
            log.info("early stopping at step %d: eval_loss has not improved by more than %g for %d evaluations "
                     "(best %.4g at step %s)", state.global_step, self.config.early_stopping_min_delta,
                     harness.evals_without_improvement, best, best_step)
            self.outcome.stop_early()
            control.should_training_stop = True
