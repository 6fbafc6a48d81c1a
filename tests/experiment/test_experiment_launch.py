"""`launch` against a local fake of RunPod's REST API v2 (and GraphQL for spot, through the real runpod SDK):
the exact requests for on-demand and spot pods, the data-center check, spot that cannot be had, the checks before any request, API errors, secrets never shown,
and the start command carrying the branch's own scripts/setup_pod.sh and really running it (the real
script's runs through it are in tests/pod/test_setup_pod.py)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shlex
import signal
import subprocess

import pytest
from experiment_repo import experiment, git, in_process, make_repo, push_branch, snapshot, tree_files
from fake_runpod import API_KEY, FakeRunPod
from graphql import parse
from graphql.utilities import value_from_ast_untyped

from conftest import QUICK_VAL, REPO
from training.experiment.launch import start_command

LOCAL_SECRETS = {"WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567", "HF_TOKEN": "hf_local_value_never_sent",
                 "GIT_TOKEN": "ghp_local_value_never_sent"}
SECRETS = ["--wandb-secret", "wandb_key", "--hf-secret", "hf_token", "--git-secret", "github_pat"]


@pytest.fixture(scope="module")
def repo(module_mktemp):
    work = make_repo(module_mktemp("launch"), tree_files())
    assert experiment(work, "new", "lr-1e4", "--set", "learning_rate=1e-4").returncode == 0
    git(work, "push", "-q", "origin", "lr-1e4")
    return work


@pytest.fixture
def api(tmp_path):
    with FakeRunPod() as fake:
        fake.env = {"RUNPOD_API_BASE_URL": fake.url, "RUNPOD_API_KEY": API_KEY, "HOME": str(tmp_path),
                    "NO_PROXY": "127.0.0.1,localhost", "WANDB_ENTITY": "oilco", **LOCAL_SECRETS}
        yield fake
    assert fake.server_errors == []


@pytest.fixture
def cli(monkeypatch, capsys):
    return in_process(monkeypatch, capsys)


def launch(repo, api, *args, env=None, run=experiment):
    result = run(repo, "launch", *args, env={**api.env, **(env or {})})
    for value in [*LOCAL_SECRETS.values(), API_KEY]:
        assert value not in result.stdout + result.stderr, "a secret was printed"
    for request in api.requests:
        body = str(request["raw"])
        assert not any(value in body for value in LOCAL_SECRETS.values()), "a local secret was sent"
        assert API_KEY not in body
    return result


def expected_env(repo, branch="lr-1e4", config="configs/experiments/lr_1e4.py", extra=()):
    # GIT_COMMIT: the commit launch checked, which the pod trains whatever is pushed later
    return {"GIT_REPO": "https://git.example.invalid/team/harness.git", "GIT_BRANCH": branch,
            "GIT_COMMIT": git(repo, "rev-parse", branch), "CONFIG_PATH": config, "VOLUME_PATH": "/runpod_volume",
            "AUTO_STOP": "1", "MAX_LIFETIME_S": "86400", "IDLE_STOP_S": "1800", **dict(extra),
            "WANDB_API_KEY": "{{ RUNPOD_SECRET_wandb_key }}", "HF_TOKEN": "{{ RUNPOD_SECRET_hf_token }}",
            "GIT_TOKEN": "{{ RUNPOD_SECRET_github_pat }}"}


def embedded(command: str) -> bytes:
    """The script a start command carries, decoded as the pod decodes it."""
    [payload] = re.findall(r"echo ([A-Za-z0-9+/=]+) \| base64 -d \| gzip -dc > \$F", command)
    return gzip.decompress(base64.b64decode(payload))


SETUP_POD = (REPO / "scripts" / "setup_pod.sh").read_bytes()  # what the test repo's branches hold


def run_id_of(output: str) -> str:
    return re.search(r"runs/(lr-1e4-[0-9a-f]{8})", output).group(1)


def test_on_demand_launch_sends_the_v2_request(repo, api):
    result = launch(repo, api, "lr-1e4", *SECRETS)
    assert result.returncode == 0, result.stderr
    run_id = run_id_of(result.stdout)
    assert f"W&B     https://wandb.ai/oilco/well-log-ocr/runs/{run_id}" in result.stdout
    assert re.search(r"^pod pod1 launched for lr-1e4 @ [0-9a-f]{7}: NVIDIA GeForce RTX 4090, on-demand$",
                     result.stdout, re.M)
    assert "price   $0.69/h" in result.stdout and "budget  $10.00 (budget_cap)" in result.stdout

    assert api.routes() == ["GET /v2/pods", "GET /v2/catalog/gpus/NVIDIA GeForce RTX 4090", "POST /v2/pods"]
    assert {r["authorization"] for r in api.requests} == {f"Bearer {API_KEY}"}
    catalog = api.requests[1]["query"]
    assert catalog == {"include": ["AVAILABILITY"], "product": ["POD"], "cloud": ["SECURE"], "count": ["1"],
                       "minCudaVersion": ["13.0"]}
    sent = api.calls("POST", "/v2/pods")[0]["body"]
    assert sent.pop("env") == expected_env(repo, extra=[("WANDB_RUN_ID", run_id), ("WANDB_ENTITY", "oilco"), ("POD_PRICING", "on-demand"),
                                                  ("POD_HOURLY_RATE", "0.69")])
    assert embedded(sent["args"]) == SETUP_POD
    assert sent == {
        "name": "exp-lr-1e4", "image": "runpod/pytorch:1.0.3-cu1300-torch291-ubuntu2404",
        "gpu": {"id": "NVIDIA GeForce RTX 4090", "count": 1, "minCudaVersion": "13.0"}, "cloud": "SECURE", "disk": 40,
        "args": start_command(SETUP_POD),
        "mounts": {"persistent": {"size": 50, "path": "/runpod_volume"}}, "startSsh": True,
    }


def test_on_demand_launch_on_a_network_volume_goes_to_its_data_center(repo, api):
    result = launch(repo, api, "lr-1e4", "--volume-id", "vol-eu1", "--gpu", "NVIDIA A100 80GB PCIe", *SECRETS)
    assert result.returncode == 0, result.stderr
    assert api.routes() == ["GET /v2/pods", "GET /v2/network-volumes/vol-eu1",
                            "GET /v2/catalog/gpus/NVIDIA A100 80GB PCIe", "POST /v2/pods"]
    sent = api.calls("POST", "/v2/pods")[0]["body"]
    assert sent["mounts"] == {"network": [{"volumeId": "vol-eu1", "path": "/runpod_volume"}]}
    assert sent["dataCenterIds"] == ["EU-RO-1"] and sent["env"]["POD_HOURLY_RATE"] == "1.64"
    assert api.pods["pod1"]["dataCenterId"] == "EU-RO-1" and "price   $1.64/h" in result.stdout


def test_pods_land_on_hosts_that_run_pypis_cuda_13_torch(repo, api, cli):
    # The default install takes PyPI's torch (CUDA 13.0, driver >= 580): launch asks RunPod for such a
    # host (gpu.minCudaVersion), and the default image's CUDA matches it.
    result = launch(repo, api, "lr-1e4", *SECRETS, run=cli)
    assert result.returncode == 0, result.stderr
    assert api.pods["pod1"]["cudaVersion"] == "13.0" and api.pods["pod1"]["dataCenterId"] == "EU-RO-1"
    assert "-cu1300-" in api.pods["pod1"]["image"]
    # Where only older drivers have the GPU, nothing is rented and the user is told why.
    api.pods.clear()
    api.catalog["NVIDIA GeForce RTX 4090"]["dataCenters"] = {"US-KS-2": "HIGH"}
    result = launch(repo, api, "lr-1e4", "--gpu", "NVIDIA GeForce RTX 4090", *SECRETS, run=cli)
    assert result.returncode == 2 and api.pods == {}
    assert "no pods to rent in SECURE cloud on hosts with CUDA >= 13.0" in result.stderr


def test_a_gpu_not_offered_in_the_volumes_data_center_is_refused_with_where_it_is(repo, api, cli):
    result = launch(repo, api, "lr-1e4", "--volume-id", "vol-eu1", "--gpu", "NVIDIA H100 80GB HBM3", *SECRETS, run=cli)
    assert result.returncode == 2
    assert result.stderr == ("error: --gpu 'NVIDIA H100 80GB HBM3': not offered in EU-RO-1, the data center of "
                             "network volume vol-eu1 (SECURE cloud, hosts with CUDA >= 13.0); data centers that have "
                             "it: US-TX-3 (HIGH). "
                             "Pick another --gpu, or a volume in one of those\n")
    assert api.pods == {} and not api.calls("POST", "/v2/pods")


def test_a_gpu_list_rents_the_first_the_catalog_can_place(repo, api, cli):
    """--gpu takes a list everywhere (launch as queue add): the next is tried only when the catalog
    has none of the previous to rent there, so nothing was rented before."""
    gpus = "NVIDIA H100 80GB HBM3,NVIDIA A100 80GB PCIe"
    result = launch(repo, api, "lr-1e4", "--volume-id", "vol-eu1", "--gpu", gpus, *SECRETS, run=cli)
    assert result.returncode == 0, result.stderr
    assert "not offered in EU-RO-1" in result.stdout and "trying the next --gpu" in result.stdout
    assert [p["body"]["gpu"]["id"] for p in api.calls("POST", "/v2/pods")] == ["NVIDIA A100 80GB PCIe"]


def test_spot_launch_sends_pod_rent_interruptable_with_the_network_volume(repo, api):
    result = launch(repo, api, "lr-1e4", "--spot", "--bid", "0.35", "--volume-id", "vol-eu1",
                    "--gpu", "NVIDIA A100 80GB PCIe", *SECRETS)
    assert result.returncode == 0, result.stderr
    assert "NVIDIA A100 80GB PCIe, spot, bid $0.35/GPU-hour" in result.stdout and "price   $0.35/h" in result.stdout
    assert api.routes() == ["GET /v2/pods", "GET /v2/network-volumes/vol-eu1",
                            "GET /v2/catalog/gpus/NVIDIA A100 80GB PCIe", "POST /graphql"]
    rent = api.requests[-1]
    assert rent["field"] == "podRentInterruptable" and rent["operation"] == "mutation"
    sent = rent["args"]["input"]
    env = {e["key"]: e["value"] for e in sent.pop("env")}
    run_id = run_id_of(result.stdout)
    assert env == expected_env(repo, extra=[("WANDB_RUN_ID", run_id), ("WANDB_ENTITY", "oilco"), ("POD_HOURLY_RATE", "0.35"),
                                      ("POD_PRICING", "spot")])
    assert sent == {
        "name": "exp-lr-1e4", "imageName": "runpod/pytorch:1.0.3-cu1300-torch291-ubuntu2404",
        "gpuTypeId": "NVIDIA A100 80GB PCIe", "cloudType": "SECURE", "gpuCount": 1, "bidPerGpu": 0.35,
        "minCudaVersion": "13.0",
        "containerDiskInGb": 40, "volumeInGb": 0, "volumeMountPath": "/runpod_volume",
        "dockerArgs": start_command(SETUP_POD),
        "startSsh": True, "networkVolumeId": "vol-eu1", "dataCenterId": "EU-RO-1",
    }


@pytest.mark.parametrize("removed", [True, False])
def test_spot_that_cannot_be_had_is_said_and_falls_back_on_demand_only_when_asked(repo, api, cli, removed):
    api.spot_removed, api.spot_capacity = removed, 0
    why = "RunPod's API no longer rents them" if removed else "none to be had at this bid"
    result = launch(repo, api, "lr-1e4", "--spot", "--bid", "0.2", *SECRETS, run=cli)
    assert result.returncode == 2 and api.pods == {}
    assert why in result.stderr and "nothing was rented. Add --fallback-on-demand" in result.stderr
    assert "at the list price $0.69/h" in result.stderr

    result = launch(repo, api, "lr-1e4", "--spot", "--bid", "0.2", "--fallback-on-demand", *SECRETS, run=cli)
    assert result.returncode == 0, result.stderr
    assert why in result.stdout and "--fallback-on-demand: launching on-demand at the list price $0.69/h" in result.stdout
    assert "NVIDIA GeForce RTX 4090, on-demand (spot could not be had)" in result.stdout
    sent = api.calls("POST", "/v2/pods")[0]["body"]
    assert sent["env"]["POD_HOURLY_RATE"] == "0.69"  # the on-demand price, not the bid
    assert [p["name"] for p in api.pods.values()] == ["exp-lr-1e4"]


def test_dry_run_prints_the_request_and_sends_nothing(repo, api, cli):
    result = launch(repo, api, "lr-1e4", "--dry-run", *SECRETS, env={"RUNPOD_API_KEY": ""}, run=cli)
    assert result.returncode == 0, result.stderr
    assert api.requests == []
    assert "dry run: nothing was sent" in result.stdout and "POST $RUNPOD_API_BASE_URL/v2/pods" in result.stdout
    body = json.loads(result.stdout[result.stdout.index("{"):result.stdout.index("\nW&B: ")])
    assert body["env"]["WANDB_API_KEY"] == "{{ RUNPOD_SECRET_wandb_key }}" and embedded(body["args"]) == SETUP_POD
    assert "SMOKE" not in body["env"]

    result = launch(repo, api, "lr-1e4", "--dry-run", "--smoke", *SECRETS, env={"RUNPOD_API_KEY": ""}, run=cli)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout[result.stdout.index("{"):result.stdout.index("\nW&B: ")])
    assert body["env"]["SMOKE"] == "1"  # setup_pod.sh runs the smoke run

    result = launch(repo, api, "lr-1e4", "--dry-run", "--spot", "--bid", "0.3", *SECRETS, env={"WANDB_ENTITY": ""},
                    run=cli)
    assert result.returncode == 0, result.stderr and api.requests == []
    mutation = result.stdout[result.stdout.index("mutation {"):result.stdout.index("\nW&B: ")]
    field = parse(mutation).definitions[0].selection_set.selections[0]
    sent = value_from_ast_untyped(field.arguments[0].value)
    assert field.name.value == "podRentInterruptable" and sent["bidPerGpu"] == 0.3 and embedded(sent["dockerArgs"]) == SETUP_POD
    assert "entity unknown, so no URL (set WANDB_ENTITY or pass --wandb-entity)" in result.stdout


@pytest.mark.parametrize("args, env, message", [
    (["lr-1e4", *SECRETS], {"RUNPOD_API_KEY": ""}, "RUNPOD_API_KEY is not set"),
    (["nope", *SECRETS], {}, "unknown experiment 'nope': no local branch"),
    (["bad/name"], {}, "experiment name 'bad/name'"),
    (["main", *SECRETS], {}, "branch has no configs/experiments/main.py (pass --config PATH"),
    (["lr-1e4", "--spot", *SECRETS], {}, "--spot needs --bid USD"),
    (["lr-1e4", "--bid", "0.3", *SECRETS], {}, "--bid is for spot pods"),
    (["lr-1e4"], {}, "no --wandb-secret NAME was given"),
    (["lr-1e4", "--wandb-secret", LOCAL_SECRETS["WANDB_API_KEY"]], {}, "looks like a secret's value"),
    (["lr-1e4", *SECRETS, "--hf-secret", "hf_abcdefghijklmnopqrstuvwxyz0123"], {}, "looks like a secret's value"),
    (["lr-1e4", *SECRETS, "--git-secret", "my secret"], {}, "a RunPod secret name is letters"),
    (["lr-1e4", *SECRETS, "--remote", "upstream"], {}, "no remote 'upstream'"),
    (["lr-1e4", *SECRETS, "--fallback-on-demand"], {}, "--fallback-on-demand is for spot pods"),
    (["lr-1e4", *SECRETS, "--volume-id", "vol-eu1", "--cloud", "COMMUNITY"], {}, "network volumes exist only in Secure"),
])
def test_refusals_send_nothing(repo, api, cli, args, env, message):
    before = snapshot(repo)
    result = launch(repo, api, *args, env=env, run=cli)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr
    assert api.requests == [] and snapshot(repo) == before


def test_refuses_unpushed_diverged_and_invalid_branches(repo, api, cli):
    assert experiment(repo, "new", "unpushed", "--set", "r=8").returncode == 0
    result = launch(repo, api, "unpushed", *SECRETS, run=cli)
    assert result.returncode == 2 and "not on remote origin: git push -u origin unpushed" in result.stderr

    git(repo, "push", "-q", "origin", "unpushed")
    git(repo, "checkout", "-q", "unpushed")
    git(repo, "commit", "-q", "--allow-empty", "-m", "local only")
    git(repo, "checkout", "-q", "main")
    result = launch(repo, api, "unpushed", *SECRETS, run=cli)
    assert result.returncode == 2 and "local branch is at" in result.stderr and "push" in result.stderr

    push_branch(repo, "broken", {"configs/experiments/broken.py": (
        "import dataclasses\n\nfrom configs.experiments.qwen3_qlora_r16 import config as parent\n\n"
        "config = dataclasses.replace(parent, max_steps=0)\n")})
    result = launch(repo, api, "broken", *SECRETS, run=cli)
    assert result.returncode == 2 and "max_steps=0: must be >= 1" in result.stderr
    assert api.requests == []


def test_refuses_when_the_experiment_already_has_a_pod(repo, api, cli):
    pod = api.add_pod("exp-lr-1e4", status="EXITED")
    result = launch(repo, api, "lr-1e4", *SECRETS, run=cli)
    assert result.returncode == 2 and f"already has pod {pod} (EXITED)" in result.stderr
    assert api.routes() == ["GET /v2/pods"]


@pytest.mark.parametrize("route, args, status, message, expected", [
    ("POST /v2/pods", [], 400, "There are no instances available with the requested specifications.",
     "RunPod API, create pod: There are no instances available with the requested specifications. (no capacity for "
     "this GPU there, or a rule of the request: try another --gpu or later)"),
    ("POST /v2/pods", [], 402, "Insufficient balance", "RunPod API, create pod: insufficient balance: add funds in "
                                                      "the RunPod console (Insufficient balance)"),
    ("graphql podRentInterruptable", ["--spot", "--bid", "0.2"], 200, "Something else went wrong",
     "RunPod API, create spot pod: Something else went wrong"),
    ("GET /v2/pods", [], 401, "invalid API key", "RunPod API, list pods: unauthorized: check RUNPOD_API_KEY"),
])
def test_api_errors_are_one_line_and_exit_2(repo, api, cli, route, args, status, message, expected):
    api.fail(route, status, message=message)
    result = launch(repo, api, "lr-1e4", *args, *SECRETS, run=cli)
    assert result.returncode == 2, result.stdout
    assert result.stderr.splitlines() == [f"error: {expected}"], result.stderr
    assert "launched" not in result.stdout and api.pods == {}


def test_a_create_is_sent_once_and_reads_are_retried(repo, api, cli):
    api.fail("GET /v2/pods", 503, message="upstream unavailable")
    api.fail("POST /v2/pods", 503, message="upstream unavailable")
    result = launch(repo, api, "lr-1e4", *SECRETS, env={"RETRY_WAIT_SECONDS": "0.01"}, run=cli)
    assert result.returncode == 2 and "RunPod API, create pod: HTTP 503: upstream unavailable; the pod may exist" \
        in result.stderr
    assert api.routes().count("GET /v2/pods") == 2 and api.routes().count("POST /v2/pods") == 1


def test_wrong_key_and_unknown_gpu(repo, api, cli):
    result = launch(repo, api, "lr-1e4", *SECRETS, env={"RUNPOD_API_KEY": "wrong-key"}, run=cli)
    assert result.returncode == 2 and result.stderr == "error: RunPod API, list pods: unauthorized: check RUNPOD_API_KEY\n"
    result = launch(repo, api, "lr-1e4", "--gpu", "NVIDIA GeForce GTX 480", *SECRETS, run=cli)
    assert result.returncode == 2 and "--gpu 'NVIDIA GeForce GTX 480': not a RunPod GPU type id" in result.stderr
    assert api.pods == {}


def test_the_start_command_carries_the_branchs_own_setup_pod_and_runs_it(repo, api, cli, tmp_path):
    # A stand-in for scripts/setup_pod.sh, on the branch only: it records where it runs and what it got.
    probe_script = ('#!/usr/bin/env bash\nset -eu\n{ echo "$CONFIG_PATH"; echo "token:${GIT_TOKEN:+set}"; '
                    'echo "askpass:${GIT_ASKPASS:-unset}"; echo "pid:$$"; } > "$PROBE"\n')
    push_branch(repo, "probe", {"scripts/setup_pod.sh": probe_script,
                                "configs/experiments/probe.py": (REPO / QUICK_VAL).read_text()})
    # A setup_pod.sh without the dead-man switch: refused unless launched without one.
    result = launch(repo, api, "probe", "--dry-run", *SECRETS, run=cli)
    assert result.returncode == 2 and "its scripts/setup_pod.sh predates the dead-man switch" in result.stderr
    result = launch(repo, api, "probe", "--dry-run", "--max-lifetime-hours", "0", "--idle-stop-minutes", "0",
                    *SECRETS, run=cli)
    assert result.returncode == 0, result.stderr
    args = json.loads(result.stdout[result.stdout.index("{"):result.stdout.index("\nW&B: ")])["args"]
    assert embedded(args) == probe_script.encode()  # the commit's own, not this checkout's
    assert '"' not in args and "\\" not in args  # nothing for JSON, GraphQL or a shell to unquote

    probe = tmp_path / "probe.txt"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CONFIG_PATH": "configs/experiments/probe.py",
           "GIT_TOKEN": "ghp_token_value_for_this_test", "PROBE": str(probe)}
    for _ in range(2):  # a restarted pod runs it again
        process = subprocess.Popen(shlex.split(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        # exec'd: the script is the start command's own process, the one RunPod signals
        assert probe.read_text().splitlines() == ["configs/experiments/probe.py", "token:set", "askpass:unset",
                                                  f"pid:{process.pid}"]
        assert "ghp_token_value_for_this_test" not in out + err


def test_a_branch_without_setup_pod_is_refused(repo, api, cli):
    git(repo, "checkout", "-q", "-b", "nosetup", "main")
    (repo / "configs/experiments/nosetup.py").write_text((REPO / QUICK_VAL).read_text())
    git(repo, "rm", "-q", "scripts/setup_pod.sh")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "no bootstrap")
    git(repo, "push", "-q", "origin", "nosetup")
    git(repo, "checkout", "-q", "main")
    result = launch(repo, api, "nosetup", *SECRETS, run=cli)
    assert result.returncode == 2 and api.requests == []
    assert result.stderr == ("error: experiment nosetup: branch has no scripts/setup_pod.sh, which the pod starts "
                             "with: merge the harness's main branch into nosetup\n")


def test_the_start_command_starts_the_images_own_services_first(tmp_path):
    # RunPod's images start sshd (and nginx, Jupyter) in /start.sh, which a start command replaces:
    # without it `startSsh` does nothing. The bootstrap must not wait for it (it sleeps for ever).
    started = tmp_path / "image-started"
    image_start = tmp_path / "start.sh"
    image_start.write_text(f"#!/bin/sh\necho $$ > {started}\nexec sleep 30 >/dev/null 2>&1\n")
    image_start.chmod(0o755)
    wait_for_it = f"for i in $(seq 50); do [ -s {started} ] && exit 0; sleep 0.1; done; exit 1\n".encode()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "IMAGE_START_SCRIPT": str(image_start)}
    result = subprocess.run(shlex.split(start_command(wait_for_it)), env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    os.kill(int(started.read_text()), signal.SIGTERM)
    # An image without one (this machine has no /start.sh): the bootstrap runs all the same.
    env["IMAGE_START_SCRIPT"] = str(tmp_path / "none.sh")
    assert subprocess.run(shlex.split(start_command(b"exit 0\n")), env=env, timeout=30).returncode == 0


def test_launch_sets_the_dead_man_switch_on_the_pod(repo, api):
    result = launch(repo, api, "lr-1e4", "--max-lifetime-hours", "1.5", "--idle-stop-minutes", "20", *SECRETS)
    assert result.returncode == 0, result.stderr
    env = api.calls("POST", "/v2/pods")[0]["body"]["env"]
    assert env["MAX_LIFETIME_S"] == "5400" and env["IDLE_STOP_S"] == "1200"


def test_a_launch_without_a_lifetime_still_gets_one_unless_told_never(repo, api, cli):
    # A pod that cannot end its run (a hang, a stop that fails) must not bill for ever: the same
    # defaults as the fleet's pods (24 h, 30 idle minutes).
    result = launch(repo, api, "lr-1e4", "--dry-run", *SECRETS, run=cli)
    assert '"MAX_LIFETIME_S": "86400"' in result.stdout and '"IDLE_STOP_S": "1800"' in result.stdout
    result = launch(repo, api, "lr-1e4", "--dry-run", "--max-lifetime-hours", "0", "--idle-stop-minutes", "0",
                    *SECRETS, run=cli)
    assert "MAX_LIFETIME_S" not in result.stdout and "IDLE_STOP_S" not in result.stdout


def test_a_pod_volume_is_said_to_die_with_an_empty_balance(repo, api, cli):
    result = launch(repo, api, "lr-1e4", "--dry-run", *SECRETS, run=cli)
    assert "note: no --volume-id: the run writes to a pod volume, which RunPod deletes with the pod, checkpoints " \
           "and all, when the account balance reaches $0" in result.stdout
    result = launch(repo, api, "lr-1e4", "--dry-run", "--volume-id", "vol-eu1", *SECRETS, run=cli)
    assert "balance" not in result.stdout


def test_the_validation_subprocess_gets_no_secrets(repo, monkeypatch):
    # Experiment files are code, run by `new`, `sweep` and `launch` to validate them: they see no secret.
    from training.experiment import configfile
    from training.experiment.gitops import Git

    for name, value in {**LOCAL_SECRETS, "RUNPOD_API_KEY": API_KEY}.items():
        monkeypatch.setenv(name, value)
    probe = ("import os\n\nfrom configs.experiments.quick_val import config  # noqa: F401\n\n"
             "seen = [k for k in ('WANDB_API_KEY', 'HF_TOKEN', 'GIT_TOKEN', 'RUNPOD_API_KEY') if k in os.environ]\n"
             "if seen:\n    raise RuntimeError('saw ' + ' '.join(seen))\n")
    git_repo = Git(repo)
    path = "configs/experiments/probe.py"
    result = configfile.validate(git_repo, git_repo.branch_commit("lr-1e4"), {path: probe}, [path])
    assert result[path]["problems"] == [], result[path]["problems"]


def test_a_spot_request_that_a_quote_would_break_is_refused_however_it_is_rented(api, monkeypatch):
    # launch and the fleet both rent through launch.rent: the check is there, before anything is sent.
    import io

    from training.errors import UserError
    from training.experiment import launch as launching
    from training.runpod.client import Api

    checked = launching.Checked(commit="0" * 40, config_path=QUICK_VAL, config={}, repo_url='https://x/"repo".git',
                                notes=[], start_command="true")
    options = launching.LaunchOptions(name="exp", spot=True, bid=0.35)
    monkeypatch.setenv("RUNPOD_API_BASE_URL", api.url)  # the SDK's GraphQL spot call reads it
    with pytest.raises(UserError, match=r"cannot send GIT_REPO: a quote or backslash breaks the spot request"):
        launching.rent(Api(API_KEY, base=api.url), options, checked, "exp-1", io.StringIO())
    assert api.created == 0
