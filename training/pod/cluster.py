"""How this node launches training, from what RunPod sets: one GPU, several GPUs on one pod, or
one node of an Instant Cluster, for scripts/setup_pod.sh.

On every node of an Instant Cluster RunPod sets NUM_NODES, NODE_RANK, MASTER_ADDR (or
PRIMARY_ADDR), MASTER_PORT (or PRIMARY_PORT), NUM_TRAINERS (GPUs per node) and NODE_ADDR; a single
pod sets RUNPOD_GPU_COUNT.

    python -m training.pod.cluster launcher   # torchrun's arguments, one per line (none: plain python)

Bad values exit 2 with one line each naming the variable.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from training.console import report_problems
from training.errors import EXIT_OK, EXIT_USER_ERROR, UserError

DEFAULT_PORT = 29500  # torchrun's own default
# On a stop signal torchrun passes SIGTERM to its ranks and SIGKILLs them after this many seconds
# (30 by default). The ranks finish their step and save together; a rank killed before that leaves
# the others, on other nodes, failing with a lost peer instead of saving. RunPod's own SIGKILL (5 s
# after SIGTERM) comes first anyway; this only keeps torchrun from cutting a slow stop short.
SHUTDOWN_SECONDS = 300


def _integer(env: Mapping[str, str], name: str, default: int | None, low: int, high: int | None,
             problems: list[str]) -> int | None:
    raw = env.get(name, "").strip()
    if raw == "":
        if default is None:
            problems.append(f"{name} is not set: RunPod sets it on every node of an Instant Cluster")
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        problems.append(f"{name}={raw}: must be an integer {bound}")
        return None
    return int(raw)


def launcher(env: Mapping[str, str]) -> list[str]:
    """torchrun's arguments for this node; [] when one process (one GPU, or a CPU) trains alone.
    Raises UserError with one line per problem."""
    problems: list[str] = []
    nodes = _integer(env, "NUM_NODES", 1, 1, None, problems)
    if problems:
        raise UserError(*problems)
    if nodes == 1:
        gpus = env.get("RUNPOD_GPU_COUNT", "").strip()
        if gpus.isdigit() and int(gpus) > 1:
            return ["--standalone", f"--nproc_per_node={gpus}", f"--shutdown-timeout={SHUTDOWN_SECONDS}"]
        return []
    node_rank = _integer(env, "NODE_RANK", None, 0, nodes - 1, problems)
    # RunPod's documentation names them both ways; MASTER_* is what torchrun calls them.
    address = (env.get("MASTER_ADDR") or env.get("PRIMARY_ADDR") or "").strip()
    if not address:
        problems.append("MASTER_ADDR (or PRIMARY_ADDR) is not set: the address of node 0, which RunPod sets "
                        "on every node of an Instant Cluster")
    port_name = "MASTER_PORT" if env.get("MASTER_PORT", "").strip() else "PRIMARY_PORT"
    port = _integer(env, port_name, DEFAULT_PORT, 1, 65535, problems)
    per_node = _integer(env, "NUM_TRAINERS", _integer(env, "RUNPOD_GPU_COUNT", 1, 1, None, problems), 1, None, problems)
    if problems:
        raise UserError(*problems)
    return [f"--nnodes={nodes}", f"--node_rank={node_rank}", f"--master_addr={address}",
            f"--master_port={port}", f"--nproc_per_node={per_node}", f"--shutdown-timeout={SHUTDOWN_SECONDS}"]


def main(argv: list[str] | None = None) -> int:
    import os

    args = sys.argv[1:] if argv is None else argv
    if args != ["launcher"]:
        print("usage: python -m training.pod.cluster launcher", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        arguments = launcher(os.environ)
    except UserError as error:
        return report_problems(error.problems)
    for argument in arguments:
        print(argument)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
