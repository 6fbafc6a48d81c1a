"""training.pod.cluster: torchrun's arguments from RunPod's variables, as a table; the command's errors."""

from __future__ import annotations

import pytest

from conftest import run_cli
from training.errors import UserError
from training.pod.cluster import SHUTDOWN_SECONDS, launcher

CLUSTER = {"NUM_NODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.65.0.2", "MASTER_PORT": "29400",
           "NUM_TRAINERS": "8", "NODE_ADDR": "10.65.0.3"}


STOP = f"--shutdown-timeout={SHUTDOWN_SECONDS}"


@pytest.mark.parametrize("env, expected", [
    ({}, []),                                                       # one GPU or a CPU: plain python
    ({"RUNPOD_GPU_COUNT": "1"}, []),
    ({"RUNPOD_GPU_COUNT": "4"}, ["--standalone", "--nproc_per_node=4", STOP]),
    ({"NUM_NODES": "1", "RUNPOD_GPU_COUNT": "2"}, ["--standalone", "--nproc_per_node=2", STOP]),
    (CLUSTER, ["--nnodes=2", "--node_rank=1", "--master_addr=10.65.0.2", "--master_port=29400", "--nproc_per_node=8", STOP]),
    # the PRIMARY_* spelling, torchrun's default port, the pod's GPU count when NUM_TRAINERS is missing
    ({"NUM_NODES": "3", "NODE_RANK": "0", "PRIMARY_ADDR": "10.0.0.1", "RUNPOD_GPU_COUNT": "2"},
     ["--nnodes=3", "--node_rank=0", "--master_addr=10.0.0.1", "--master_port=29500", "--nproc_per_node=2", STOP]),
    ({**CLUSTER, "MASTER_PORT": "", "PRIMARY_PORT": "1234"},
     ["--nnodes=2", "--node_rank=1", "--master_addr=10.65.0.2", "--master_port=1234", "--nproc_per_node=8", STOP]),
])
def test_launcher(env, expected):
    assert launcher(env) == expected


@pytest.mark.parametrize("env, problems", [
    ({"NUM_NODES": "two"}, ["NUM_NODES=two: must be an integer >= 1"]),
    ({"NUM_NODES": "2"}, ["NODE_RANK is not set: RunPod sets it on every node of an Instant Cluster",
                          "MASTER_ADDR (or PRIMARY_ADDR) is not set: the address of node 0, which RunPod sets "
                          "on every node of an Instant Cluster"]),
    ({**CLUSTER, "NODE_RANK": "2"}, ["NODE_RANK=2: must be an integer between 0 and 1"]),
    ({**CLUSTER, "MASTER_PORT": "70000", "NUM_TRAINERS": "0"},
     ["MASTER_PORT=70000: must be an integer between 1 and 65535", "NUM_TRAINERS=0: must be an integer >= 1"]),
])
def test_bad_values_name_each_variable(env, problems):
    with pytest.raises(UserError) as raised:
        launcher(env)
    assert raised.value.problems == problems


def test_the_command_prints_one_argument_a_line_or_one_error_a_line():
    result = run_cli(["-m", "training.pod.cluster", "launcher"], env=CLUSTER)
    assert result.returncode == 0 and result.stdout.splitlines() == launcher(CLUSTER)
    bad = run_cli(["-m", "training.pod.cluster", "launcher"], env={**CLUSTER, "NODE_RANK": "x"})
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == "error: NODE_RANK=x: must be an integer between 0 and 1\n"
