"""The budget cap during training: the callback that keeps the cost ledger current, warns at 90%
of budget_cap and stops at 100% (the rates, the ledger and the verdict are training.cost's)."""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback

from training.cost import WARN_FRACTION, CostMeter, budget_verdict
from training.outcome import Outcome

log = logging.getLogger("training")


class BudgetCallback(TrainerCallback):
    """Keeps the ledger current, warns once at 90% of budget_cap, and at 100% decides to stop (in the
    run's Outcome; training.trainer.preemption saves and stops every rank) or only warns (budget_action="warn")."""

    def __init__(self, meter: CostMeter, action: str, outcome: Outcome, alert=None, clock=time.monotonic):
        self.meter, self.action, self.outcome, self.alert, self.clock = meter, action, outcome, alert, clock
        self._cap_reported = False

    def on_step_end(self, args, state, control, **kwargs):
        self.meter.step_done(self.clock())
        if not state.is_world_process_zero:
            return
        ledger = self.meter.ledger
        cost, cap = ledger.total_usd(), self.meter.cap_usd
        verdict = budget_verdict(cost, cap, ledger.warned)
        if verdict != "ok" and not ledger.warned:
            message = (f"cost {cost:.2f} USD has passed {WARN_FRACTION:.0%} of budget_cap {cap:.2f} USD at step "
                       f"{state.global_step}")
            log.warning("budget: %s", message)
            if self.alert:
                self.alert(f"Budget {WARN_FRACTION:.0%} used", message)
            ledger.mark_warned()
        if verdict == "stop" and self.action == "stop" and not self.outcome.budget_stopped:
            log.warning("budget: cost %.2f USD reached budget_cap %.2f USD: saving a checkpoint and stopping", cost, cap)
            self.outcome.stop_budget()
        elif verdict == "stop" and not self._cap_reported:
            log.warning("budget: cost %.2f USD reached budget_cap %.2f USD; training on (budget_action=warn)", cost, cap)
            self._cap_reported = True
        if state.global_step % max(args.logging_steps, 1) == 0:
            ledger.save()

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.meter.ledger.save()
