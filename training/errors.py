"""How a run ends: the user-facing error type and the documented exit codes."""

from __future__ import annotations

EXIT_OK = 0  # finished, or stopped by early stopping
EXIT_USER_ERROR = 2  # bad config, bad input or failed preflight; nothing was created
EXIT_BUDGET = 3  # budget_cap reached: a checkpoint was saved, resuming needs a higher cap
EXIT_LOCKED = 4  # another trainer holds the output directory
EXIT_PREEMPTED = 143  # SIGTERM/SIGINT: a checkpoint was saved, `--resume auto` continues


class UserError(Exception):
    """A problem the user can fix: printed as one line per problem, exit code 2, no traceback."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __reduce__(self):  # shared between torchrun ranks by pickling: keep one line per problem
        return type(self), tuple(self.problems)
