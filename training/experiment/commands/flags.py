"""The flags more than one command takes, defined once so that a flag means one thing everywhere.

Pod options (`launch`, `queue add`, `fleet run`): `--gpu TYPE[,TYPE...]` (GPU types in order of
preference), `--spot`/`--on-demand` (exclusive; on-demand by default: RunPod may drop spot pods),
`--bid USD`, the secret flags (RunPod secrets, never the values) and the dead-man switch with one
default for every pod. Run readers (`status`, `compare`, `fleet status`): `--outputs DIR` or
`--volume-id ID`.
"""

from __future__ import annotations

import argparse
import sys

from training.errors import UserError
from training.experiment import launch as launching
from training.experiment.names import name_problems
from training.experiment.volume import add_volume_flag

EPILOG = "Exit codes: 0 done, 2 bad input, refused (nothing changed) or RunPod API error."
OUTPUTS_HELP = "runs' root (default: <VOLUME_PATH or ./outputs>/checkpoints)"
VOLUME_RUNS_HELP = "read the runs from this network volume's checkpoints/ instead, from anywhere (no pod)"
DEFAULT_SPOT = False  # on-demand unless --spot: a spot pod needs a bid, and RunPod may stop offering them


def runs_root(command) -> None:
    """Where a command reads runs: --outputs DIR or --volume-id ID, not both."""
    where = command.add_mutually_exclusive_group()
    where.add_argument("--outputs", metavar="DIR", help=OUTPUTS_HELP)
    add_volume_flag(where, VOLUME_RUNS_HELP)


def outputs(command) -> None:
    command.add_argument("--outputs", metavar="DIR", help=OUTPUTS_HELP)


def check_names(names: list[str]) -> None:
    problems = [p for name in names for p in name_problems(name)]
    if problems:
        raise UserError(*problems)


# --- pod options --------------------------------------------------------------------------------

def gpus(command, why: str) -> None:
    command.add_argument("--gpu", default=launching.DEFAULT_GPU, metavar="TYPE[,TYPE...]",
                         help=f"RunPod GPU type ids in order of preference, {why} (default {launching.DEFAULT_GPU})")


def gpu_list(value: str) -> list[str]:
    listed = [gpu.strip() for gpu in value.split(",") if gpu.strip()]
    if not listed:
        raise UserError("--gpu: name at least one GPU type")
    return listed


def pricing(command) -> None:
    """--spot or --on-demand; on-demand unless --spot (a spot pod needs a bid, and may not exist)."""
    kind = command.add_mutually_exclusive_group()
    kind.add_argument("--spot", dest="spot", action="store_true", default=DEFAULT_SPOT,
                      help="interruptible (spot) pods at --bid per GPU-hour. RunPod's REST API v2 has no spot pods: "
                           "this uses GraphQL podRentInterruptable while RunPod still offers it")
    kind.add_argument("--on-demand", dest="spot", action="store_false", help="on-demand pods (the default)")


def bid(command, why: str) -> None:
    command.add_argument("--bid", type=float, metavar="USD", help=f"the most paid per GPU-hour for a spot pod; {why}")


def secrets(command) -> None:
    """The RunPod secrets a pod's environment refers to (their names; a value never leaves RunPod)."""
    command.add_argument("--wandb-secret", metavar="NAME", help="RunPod secret holding WANDB_API_KEY")
    command.add_argument("--hf-secret", metavar="NAME", help="RunPod secret holding HF_TOKEN")
    command.add_argument("--git-secret", metavar="NAME", help="RunPod secret holding GIT_TOKEN (private repos)")


def deadman(command) -> None:
    command.add_argument("--max-lifetime-hours", type=float, default=launching.DEFAULT_MAX_LIFETIME_H, metavar="H",
                         help="dead-man switch: the pod stops itself H hours after it started, so a pod that cannot "
                              "end its run never bills for ever (default %(default)g; 0: never)")
    command.add_argument("--idle-stop-minutes", type=float, default=launching.DEFAULT_IDLE_STOP_MIN, metavar="MIN",
                         help="dead-man switch: the pod stops itself after MIN minutes of an idle GPU once training "
                              "has started (default %(default)g; 0: never)")


# --- a renamed flag -----------------------------------------------------------------------------

class Deprecated(argparse.Action):
    """An old spelling still taken, with a warning that names the new one (hidden from --help)."""

    def __init__(self, option_strings, dest, instead: str, **kwargs):
        self.instead = instead
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated here, use {self.instead}", file=sys.stderr)
        setattr(namespace, self.dest, values)
