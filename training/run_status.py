"""`run_status.json`: what a run is doing or how it ended, for `experiment status/compare` and humans.

Statuses: running, then how the run ended in training.outcome.RunOutcome's words: finished,
early_stopped, preempted, budget_stopped, failed.
"""

from __future__ import annotations

import json
import os

from training.checkpointing.save import write_json_atomic
from training.timestamps import utc_now

STATUS_FILE = "run_status.json"


def write_status(output_dir: str, status: str, **fields) -> None:
    payload = {"status": status, "updated_at": utc_now(), **fields}
    write_json_atomic(os.path.join(output_dir, STATUS_FILE), payload)


def update_status(output_dir: str, **fields) -> None:
    """Add `fields` to the recorded status (what happened after the run ended, e.g. its upload)."""
    status = read_status(output_dir)
    if status is not None:
        write_json_atomic(os.path.join(output_dir, STATUS_FILE), {**status, **fields})


def read_status(output_dir: str) -> dict | None:
    try:
        with open(os.path.join(output_dir, STATUS_FILE), encoding="utf-8") as source:
            return json.load(source)
    except (OSError, json.JSONDecodeError):
        return None


def recorded_since(output_dir: str, since: str) -> dict | None:
    """The status in output_dir if it was written at or after `since` (a utc_now() time), else None:
    an older one is a previous run's."""
    status = read_status(output_dir)
    return status if status is not None and status.get("updated_at", "") >= since else None


def main(argv: list[str] | None = None) -> int:
    """`python -m training.run_status --config FILE [--exit-code]`: how the experiment's last run
    ended (for scripts: under torchrun the launcher's exit code is 1 whatever the ranks returned)."""
    import argparse
    import sys

    from configs.loader import load_config
    from training.errors import EXIT_FAILED, EXIT_OK
    from training.run_config import resolve

    parser = argparse.ArgumentParser(prog="python -m training.run_status", description=main.__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--exit-code", action="store_true", help="print only the exit code of the last run")
    parser.add_argument("--since", default="", help="ignore a status older than this UTC time (YYYY-MM-DDTHH:MM:SSZ)")
    args = parser.parse_args(argv)
    status = recorded_since(resolve(load_config(args.config, args.overrides)).output_dir, args.since)
    if status is None or (args.exit_code and status.get("exit_code") is None):
        print("no run recorded an outcome" + (f" since {args.since}" if args.since else ""), file=sys.stderr)
        return EXIT_FAILED
    print(status["exit_code"] if args.exit_code else json.dumps(status, indent=2, sort_keys=True))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
