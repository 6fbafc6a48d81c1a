"""How a run ends, as a table: which stop wins, and what each means for exit code, status and final/."""

from __future__ import annotations

import pytest

from training.errors import EXIT_BUDGET, EXIT_OK, EXIT_PREEMPTED
from training.outcome import ANOTHER_RANK, Outcome


@pytest.mark.parametrize("signal, budget, early, status, code, final", [
    (None, False, False, "finished", EXIT_OK, True),
    (None, False, True, "early_stopped", EXIT_OK, True),
    (None, True, False, "budget_stopped", EXIT_BUDGET, False),
    (None, True, True, "budget_stopped", EXIT_BUDGET, False),  # the cap ends it with a checkpoint, no final/
    ("SIGTERM", True, False, "preempted", EXIT_PREEMPTED, False),  # the pod is going away: that comes first
    ("SIGINT", False, True, "preempted", EXIT_PREEMPTED, False),
])
def test_ending(signal, budget, early, status, code, final):
    outcome = Outcome()
    if signal:
        outcome.stop_signal(signal)
    if budget:
        outcome.stop_budget()
    if early:
        outcome.stop_early()
    ending = outcome.ending()
    assert (ending.status, ending.exit_code, ending.writes_final) == (status, code, final)
    assert outcome.stopping is (signal is not None or budget)


def test_a_rank_keeps_the_signal_it_got_itself():
    outcome = Outcome()
    outcome.stop_signal("SIGINT")
    outcome.stop_signal(ANOTHER_RANK)  # what the step-end agreement reports on every rank
    assert outcome.signal == "SIGINT"
    other = Outcome()
    other.stop_signal(ANOTHER_RANK)
    assert other.signal == ANOTHER_RANK


def test_messages_say_what_to_do_next():
    outcome = Outcome()
    outcome.stop_signal("SIGTERM")
    assert outcome.ending().message(7, "SIGTERM") == ("stopped by SIGTERM at step 7: checkpoint saved; "
                                                      "rerun with --resume auto to continue")
    budget = Outcome()
    budget.stop_budget()
    assert "raise budget_cap and rerun with --resume auto" in budget.ending().message(3)
    assert Outcome().ending().message(10) == "done at step 10"
