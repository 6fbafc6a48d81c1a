"""What the commands print: the harness's log lines on stdout, and one `error:` line per problem."""

from __future__ import annotations

import logging
import os
import sys

from training import distributed
from training.errors import EXIT_USER_ERROR

log = logging.getLogger("training")


def setup_logging() -> None:
    """Our progress lines on stdout; other libraries keep their own logging untouched."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    handler.set_name("harness-console")
    for old in [h for h in log.handlers if h.get_name() == "harness-console"]:
        log.removeHandler(old)  # main() run again in one process (tests, benchmarks)
    log.addHandler(handler)
    log.setLevel(logging.INFO if distributed.is_main() else logging.WARNING)  # one voice under torchrun
    log.propagate = False
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def report_problems(problems: list[str]) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_USER_ERROR
