"""How a run ends: the user-facing error type and the documented exit codes.

The one home of the exit codes: train.py, the pod's supervisor and commands (python -m training.pod),
the smoke run, the experiment CLI and its fleet, `python -m training.run_status`, cuda_build.py and
scripts/setup_pod.sh use them (the script's copies are checked against these by tests/pod/test_setup_pod.py).
Stdlib only: cuda_build.py imports it before anything is installed.
"""

from __future__ import annotations

EXIT_OK = 0  # finished, or stopped by early stopping
EXIT_USER_ERROR = 2  # bad config, bad input or failed preflight; nothing was created
EXIT_BUDGET = 3  # budget_cap reached: a checkpoint was saved, resuming needs a higher cap
EXIT_LOCKED = 4  # another trainer holds the output directory
EXIT_PREEMPTED = 143  # SIGTERM/SIGINT: a checkpoint was saved, `--resume auto` continues
# setup_pod.sh only, before the harness runs: the network after the retries, or the install, failed.
# (A trainer that crashes exits 1 too: "failed".)
EXIT_SETUP_FAILED = 1
# A command that could not do what it was asked (the pod's stop, a smoke check, no recorded outcome).
EXIT_FAILED = 1
EXIT_UNREACHABLE = 75  # sysexits' EX_TEMPFAIL: RunPod stayed unreachable; `fleet run` again carries on
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), the shell's convention

# What each code means, in the pod's log (for people: `fleet run` reads the outcome line, training.outcome_line).
MEANINGS = {
    EXIT_OK: "finished",
    EXIT_USER_ERROR: "bad config or environment, or failed preflight",
    EXIT_BUDGET: "budget cap reached",
    EXIT_LOCKED: "output directory locked by another trainer",
    EXIT_PREEMPTED: "stopped by a signal after saving a checkpoint",
}


def meaning(code: int) -> str:
    return MEANINGS.get(code, "failed")


class UserError(Exception):
    """A problem the user can fix: printed as one line per problem, exit code 2, no traceback."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __reduce__(self):  # shared between torchrun ranks by pickling: keep one line per problem
        return type(self), tuple(self.problems)
