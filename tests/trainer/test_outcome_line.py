"""The outcome line as a table: what the pod prints as its run ends, and how the one reader
(training.outcome_line.read) turns the last lines of a pod's log into a RunOutcome."""

from __future__ import annotations

import pytest

from training.errors import EXIT_BUDGET, EXIT_OK, EXIT_PREEMPTED
from training.outcome import RunOutcome
from training.outcome_line import line, outcome_for, read

P = "[setup_pod 12:00:00] "
FINISHED = P + "run-outcome: outcome=finished exit=0 step=500 phase=training"
PREEMPTED = P + "run-outcome: outcome=preempted exit=143 step=120 phase=training"
DEADMAN = "dead-man switch: gpu_idle_1800s: stopping pod pod7"


@pytest.mark.parametrize("code, signalled, status, expected", [
    (EXIT_OK, False, "finished", RunOutcome.FINISHED),
    (EXIT_OK, False, "early_stopped", RunOutcome.EARLY_STOPPED),
    (EXIT_OK, False, None, RunOutcome.FINISHED),
    (EXIT_BUDGET, False, "budget_stopped", RunOutcome.BUDGET_STOPPED),
    (EXIT_PREEMPTED, False, "preempted", RunOutcome.PREEMPTED),
    (2, True, None, RunOutcome.PREEMPTED),  # a stop signal wins: the pod is going away
    (1, False, "failed", RunOutcome.FAILED),
    (4, False, None, RunOutcome.FAILED),
])
def test_the_outcome_of_an_exit(code, signalled, status, expected):
    assert outcome_for(code, signalled, status) is expected


@pytest.mark.parametrize("lines, outcome, step", [
    ([FINISHED], RunOutcome.FINISHED, 500),
    # The old reader's traps: words anywhere, an exit line followed by more lines.
    (["early stopping is configured", FINISHED], RunOutcome.FINISHED, 500),
    ([FINISHED] + [f"[setup_pod] drain {i}" for i in range(40)], RunOutcome.FINISHED, 500),
    (["stopped during training (exit 143)", P + "run-outcome: outcome=early_stopped exit=0 step=350 phase=training"],
     RunOutcome.EARLY_STOPPED, 350),
    ([P + "run-outcome: outcome=budget_stopped exit=3 step=200 phase=training"], RunOutcome.BUDGET_STOPPED, 200),
    ([P + "run-outcome: outcome=failed exit=2 step=none phase=setup"], RunOutcome.FAILED, None),
    ([PREEMPTED], RunOutcome.PREEMPTED, 120),
    ([PREEMPTED, "[setup_pod] experiment branch x", FINISHED], RunOutcome.FINISHED, 500),  # resumed, then finished
    # The dead-man switch's stop reaches the run as SIGTERM: counted as the switch's.
    ([DEADMAN, PREEMPTED], RunOutcome.DEADMAN, 120),
    ([DEADMAN], RunOutcome.DEADMAN, None),  # killed before the run could say anything
    ([DEADMAN, PREEMPTED, "[setup_pod] restarted", PREEMPTED], RunOutcome.PREEMPTED, 120),  # an older start's switch
    ([FINISHED, DEADMAN], RunOutcome.FINISHED, 500),  # the switch stopped a pod whose run had finished
    ([P + "run-outcome: outcome=deadman exit=143 step=7 phase=training reason=lifetime_3600s_reached"],
     RunOutcome.DEADMAN, 7),
    ([], RunOutcome.UNKNOWN, None),
    (["training ended with exit code 0: finished"], RunOutcome.UNKNOWN, None),  # human words are no outcome
    ([P + "run-outcome: outcome=splendid exit=0 step=1 phase=training"], RunOutcome.UNKNOWN, None),
    ([P + "run-outcome: outcome=finished exit=zero step=1 phase=training"], RunOutcome.UNKNOWN, None),
    ([P + "run-outcome: outcome=finished exit=0 step=9 phase=training extra=later"], RunOutcome.FINISHED, 9),
])
def test_reading_the_last_lines_of_a_log(lines, outcome, step):
    reading = read(lines)
    assert (reading.outcome, reading.step) == (outcome, step)
    assert reading.why


def test_what_is_printed_is_what_is_read():
    for outcome in RunOutcome:
        printed = line(outcome, 143 if outcome is RunOutcome.PREEMPTED else 0, 42, "smoke run")
        reading = read([P + printed])
        assert (reading.outcome, reading.step, reading.phase) == (outcome, 42, "smoke run")
