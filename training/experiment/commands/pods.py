"""`status [NAME]` and `stop NAME`: the experiments' pods, with their runs' progress
(training.experiment.status)."""

from __future__ import annotations

import sys

from training.errors import UserError
from training.experiment.commands import flags


def register(commands) -> None:
    status = commands.add_parser("status", help="pods of experiments, with their runs' progress", epilog=flags.EPILOG)
    status.add_argument("name", nargs="?", metavar="NAME")
    flags.runs_root(status)
    status.set_defaults(run=cmd_status)

    stop = commands.add_parser("stop", help="stop (or terminate) an experiment's pod", epilog=flags.EPILOG)
    stop.add_argument("name", metavar="NAME")
    stop.add_argument("--terminate", action="store_true", help="remove the pod entirely (ends all billing)")
    stop.add_argument("--delete-data", action="store_true",
                      help="with --terminate: allow deleting a pod volume that holds checkpoints")
    stop.set_defaults(run=cmd_stop)


def cmd_status(args, argv) -> int:
    from training.experiment.status import status
    from training.experiment.volume import open_runs
    from training.runpod import client as runpod_client

    def has_branch(name):
        from training.experiment.gitops import Git

        try:
            return Git.here().branch_commit(name) is not None
        except UserError:
            return False

    api = runpod_client.connect()
    return status(args.name, open_runs(args.outputs, args.volume_id, api), has_branch, sys.stdout, api)


def cmd_stop(args, argv) -> int:
    from training.experiment.status import stop

    flags.check_names([args.name])
    return stop(args.name, args.terminate, args.delete_data, sys.stdout)
