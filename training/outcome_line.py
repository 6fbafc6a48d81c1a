"""The outcome line: the one machine-readable line a pod's run prints as it ends, and its one reader.

    run-outcome: outcome=finished exit=0 step=500 phase=training

The supervisor (training.pod.supervisor) prints it as the run ends, and scripts/setup_pod.sh when setup
ends before the hand-over, each right after the human line (`<phase> ended with exit code N: ...` or
`stopped during <phase> (exit 143) ...`). `outcome` is a RunOutcome value, `exit` the exit code,
`step` the run's global step as run_status.json recorded it (`none` when no step was), `phase` one of
setup, preflight, training, smoke run. Further `key=value` fields may follow; readers ignore them.

The pod's dead-man switch (the start command, training.experiment.launch) says
`dead-man switch: <reason>: stopping pod <id>` (or prints this line with `outcome=deadman` and
`reason=<reason>`). The stop it asks for reaches the run as a SIGTERM, whose own line then says
preempted: `read` calls such an ending deadman, which the fleet counts as a failure.

`read` is the one parser, used by the fleet on the last lines of a pod's log (RunPod's API).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from training.errors import EXIT_BUDGET, EXIT_OK, EXIT_PREEMPTED
from training.outcome import RunOutcome

TAG = "run-outcome:"
_LINE = re.compile(r"(?:^|\s)run-outcome:((?:\s+[A-Za-z_]+=\S*)+)\s*$")
_DEADMAN = re.compile(r"dead-man switch: (?P<reason>[^:\s]+): stopping pod")
# Endings after which the pod has nothing left to do: a pod still running past one is parked.
TERMINAL = (RunOutcome.FINISHED, RunOutcome.EARLY_STOPPED, RunOutcome.BUDGET_STOPPED, RunOutcome.FAILED)


def outcome_for(exit_code: int, signalled: bool = False, status: str | None = None) -> RunOutcome:
    """The outcome of a run that exited with `exit_code`; `signalled`: a stop signal arrived;
    `status`: run_status.json's status of this run, which tells early stopping from a full run."""
    if signalled or exit_code == EXIT_PREEMPTED:
        return RunOutcome.PREEMPTED
    if exit_code == EXIT_OK:
        return RunOutcome.EARLY_STOPPED if status == RunOutcome.EARLY_STOPPED else RunOutcome.FINISHED
    if exit_code == EXIT_BUDGET:
        return RunOutcome.BUDGET_STOPPED
    return RunOutcome.FAILED


def line(outcome: RunOutcome, exit_code: int, step: int | None, phase: str) -> str:
    return f"{TAG} outcome={outcome.value} exit={exit_code} step={'none' if step is None else step} " \
           f"phase={phase.replace(' ', '_')}"


@dataclass(frozen=True)
class Reading:
    """What the log says of how the run ended."""
    outcome: RunOutcome
    why: str
    exit_code: int | None = None
    step: int | None = None
    phase: str | None = None


def parse(text: str) -> dict[str, str] | None:
    """The fields of one outcome line, or None when `text` is not one (or a damaged one)."""
    found = _LINE.search(text)
    if not found:
        return None
    fields = dict(part.split("=", 1) for part in found.group(1).split())
    if fields.get("outcome") not in {outcome.value for outcome in RunOutcome}:
        return None
    if fields.get("exit", "none") != "none" and not re.fullmatch(r"\d{1,3}", fields.get("exit", "")):
        return None
    return fields


def read(lines: Sequence[str]) -> Reading:
    """How the run ended, from the last lines of its pod's log: the last outcome line wins; a stop
    signal after the dead-man switch spoke is deadman; no outcome line at all is unknown."""
    last, last_at, previous_at = None, -1, -1
    for index, text in enumerate(lines):
        fields = parse(text)
        if fields is not None:
            last, previous_at, last_at = fields, last_at, index
    deadman = [m.group("reason") for text in lines[previous_at + 1:] if (m := _DEADMAN.search(text))]
    if last is None:
        if deadman:
            return Reading(RunOutcome.DEADMAN, f"the dead-man switch stopped the pod ({deadman[-1]})")
        return Reading(RunOutcome.UNKNOWN, f"no outcome line in the last {len(lines)} lines of its log")
    outcome = RunOutcome(last["outcome"])
    exit_code = int(last["exit"]) if last.get("exit", "none").isdigit() else None
    step = int(last["step"]) if last.get("step", "").isdigit() else None
    phase = last.get("phase", "").replace("_", " ") or None
    at = f" during {phase}" if phase else ""
    at += f" at step {step}" if step is not None else ""
    if outcome is RunOutcome.PREEMPTED and deadman:
        outcome = RunOutcome.DEADMAN
    if outcome is RunOutcome.DEADMAN:
        reason = last.get("reason") or (deadman[-1] if deadman else "no reason given")
        why = f"the dead-man switch stopped the pod ({reason}){at}"
    elif outcome is RunOutcome.PREEMPTED:
        why = f"stopped by a signal{at} (exit {exit_code}): checkpoint saved"
    elif outcome is RunOutcome.BUDGET_STOPPED:
        why = f"exit {exit_code}: the experiment's own budget_cap{at}"
    elif outcome is RunOutcome.EARLY_STOPPED:
        why = f"exit {exit_code}: early stopping{at}"
    elif outcome is RunOutcome.FINISHED:
        why = f"exit {exit_code}: finished{at}"
    else:
        why = f"exit {exit_code}: {outcome.value}{at}"
    return Reading(outcome, why, exit_code, step, phase)
