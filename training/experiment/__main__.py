"""python -m training.experiment new|sweep|launch|status|stop|compare|queue|fleet|publish|pull|export|data:
experiments as git branches. Each command group is a module of training.experiment.commands.

Exit codes: 0 done; 2 bad input, a refused command (nothing was changed) or a RunPod API error,
one `error:` line per problem on stderr.
"""

from __future__ import annotations

import argparse
import sys

from training.errors import EXIT_USER_ERROR, UserError
from training.experiment.commands import GROUPS, flags


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m training.experiment", epilog=flags.EPILOG,
                                   description="Experiments as git branches: create, launch on RunPod, follow, compare.")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    return main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        return args.run(args, argv)
    except UserError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
