"""`launch`: check an experiment branch, then rent a pod whose start command runs its scripts/setup_pod.sh.

Checks before any request: the branch exists, its config validates as the branch has it, the branch
is pushed (local head == the remote's head), the secrets are given by name. Then, before anything is
rented: no pod of the experiment exists, the GPU type is in RunPod's catalog with pods to rent (in
the network volume's data center, when there is one). The pod gets the setup_pod.sh environment
(scripts/README.md), secrets only as RunPod secret references `{{ RUNPOD_SECRET_<name> }}`, its volume
mounted at VOLUME_MOUNT (RunPod's default would be /workspace) and a start command that carries the
branch's scripts/setup_pod.sh inside it (`start_command`): that script makes the pod's one clone.
On-demand pods are created through REST API v2; spot pods, which v2 does not offer, through
GraphQL while RunPod still has it, else (--fallback-on-demand) on-demand.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import secrets
from dataclasses import dataclass

from training.errors import EXIT_OK, UserError
from training.experiment import configfile
from training.experiment.gitops import Git, clone_url
from training.experiment.names import config_path, name_problems
from training.pod.cuda_build import PYPI_TORCH_CUDA
from training.redaction import SECRET_VARIABLES
from training.runpod import client as runpod_client
from training.runpod.names import pod_name
from training.runpod.prices import ON_DEMAND, POD_RATE_ENV, PRICING_VAR, SPOT

DEFAULT_GPU = "NVIDIA GeForce RTX 4090"  # 24 GB: Qwen3-VL 2B in 4-bit with room for batch 2
# Pods go to hosts whose driver runs this CUDA (REST v2's gpu.minCudaVersion): PyPI's torch, the
# build scripts/install.sh takes there (training/pod/cuda_build.py), and the default image's CUDA.
HOST_MIN_CUDA = PYPI_TORCH_CUDA
# CUDA 13.0 like the host, Python 3.12 (Ubuntu 24.04) for the pinned dependencies, and RunPod's
# /start.sh, which the start command runs first for SSH.
DEFAULT_IMAGE = "runpod/pytorch:1.0.3-cu1300-torch291-ubuntu2404"
# Set explicitly on every pod: RunPod would mount a volume at /workspace. setup_pod.sh's VOLUME_PATH.
VOLUME_MOUNT = "/runpod_volume"
CONTAINER_DISK_GB = 40  # the image and the install's temporary files (no cache is kept; the venv is on the volume)
# Without --volume-id the run writes to a pod volume: it survives stop and spot preemption, and is
# deleted with the pod on terminate.
POD_VOLUME_GB = 50  # deleted, data and all, with a pod RunPod removes when the account balance reaches $0
SETUP_SCRIPT = "scripts/setup_pod.sh"  # the pod's bootstrap, as the experiment's commit has it
# The image's own start script: on RunPod's images it starts sshd (with the account's PUBLIC_KEY),
# nginx and Jupyter, then sleeps. A start command replaces the image's, so without this `startSsh`
# does nothing and nobody can look inside a stuck pod. It runs in the background, before the bootstrap.
IMAGE_START_ENV, IMAGE_START = "IMAGE_START_SCRIPT", "/start.sh"
# The dead-man switch's defaults for every pod (launch and the fleet alike): a pod that cannot end
# its run never bills for ever, and one whose GPU sits idle once training has started stops.
DEFAULT_MAX_LIFETIME_H = 24.0
DEFAULT_IDLE_STOP_MIN = 30.0
# The dead-man switch lives in the branch's setup_pod.sh (it shares the pod's self-stop there): a
# branch whose copy predates it would ignore MAX_LIFETIME_S and IDLE_STOP_S without a word.
DEADMAN_MARKER = b"start_deadman"


def start_command(setup_script: bytes) -> str:
    """The pod's start command: the image's own start script in the background (SSH), then
    `setup_script` written to a temporary file and exec'd (so it is the container's main process,
    the one RunPod sends SIGTERM to; it starts the dead-man switch first of all). The script
    travels gzipped and base64-encoded inside the command, as SkyPilot ships its start scripts:
    base64 has no quote, space or backslash for JSON, GraphQL or RunPod's shell-style split of the
    command to break, and the pod needs no second download (nor a token for one) before the clone."""
    payload = base64.b64encode(gzip.compress(setup_script, mtime=0)).decode()
    image = f"I=${{{IMAGE_START_ENV}:-{IMAGE_START}}}"
    script = "; ".join(["set -eu", image, "if [ -x $I ]; then ($I &); fi", "F=$(mktemp)",
                        f"echo {payload} | base64 -d | gzip -dc > $F", "exec bash $F"])
    return f"bash -c '{script}'"


SECRET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Shapes of W&B keys (40 hex), Hugging Face, GitHub and RunPod tokens: a value pasted where a name goes.
_TOKEN_SHAPES = re.compile(r"^(hf_|ghp_|gho_|ghs_|github_pat_|rpa_|rps_)[A-Za-z0-9_]{20,}$|^[0-9a-f]{32,}$")
_UNSAFE = re.compile(r'["\\\n\r]')


@dataclass
class LaunchOptions:
    name: str
    gpu: str = DEFAULT_GPU
    spot: bool = False
    bid: float | None = None
    volume_id: str | None = None
    image: str = DEFAULT_IMAGE
    cloud: str | None = None
    remote: str | None = None
    config: str | None = None
    wandb_entity: str | None = None
    wandb_secret: str | None = None
    hf_secret: str | None = None
    git_secret: str | None = None
    auto_stop: bool = True
    fallback_on_demand: bool = False
    max_lifetime_h: float = DEFAULT_MAX_LIFETIME_H  # 0 = no limit
    idle_stop_min: float = DEFAULT_IDLE_STOP_MIN  # 0 = never
    dry_run: bool = False
    smoke: bool = False  # the pod runs the smoke run (python -m training.pod.smoke) instead of training


@dataclass
class Checked:
    commit: str
    config_path: str
    config: dict
    repo_url: str
    notes: list[str]
    start_command: str  # with the commit's setup_pod.sh inside


def check(git: Git, options: LaunchOptions) -> Checked:
    problems = name_problems(options.name)
    if problems:
        raise UserError(*problems)
    commit = git.branch_commit(options.name)
    if commit is None:
        raise UserError(f"unknown experiment {options.name!r}: no local branch of that name "
                        "(create it with `python -m training.experiment new`)")
    path = options.config or config_path(options.name)
    if not git.has_file(commit, path):
        raise UserError(f"experiment {options.name}: branch has no {path} (pass --config PATH for another file)")
    if not git.has_file(commit, SETUP_SCRIPT):
        raise UserError(f"experiment {options.name}: branch has no {SETUP_SCRIPT}, which the pod starts with: "
                        f"merge the harness's main branch into {options.name}")
    result = configfile.validate(git, commit, {}, [path])[path]
    if result["problems"]:
        raise UserError(*[f"experiment {options.name}: {p}" for p in result["problems"]])
    wanted = option_problems(options) + config_option_problems(options, result["config"])
    if wanted:  # the options, not the branch, are at fault: the fleet stops instead of marking it dead
        raise OptionProblem(*wanted)
    remote = options.remote or git.remote_of(options.name)
    url = git.remote_url(remote)
    if url is None:
        problems.append(f"no remote {remote!r}: add one (git remote add {remote} URL) and push {options.name} to it")
    if problems:
        raise UserError(*problems)
    setup_script = git.show(commit, SETUP_SCRIPT)
    if (options.max_lifetime_h or options.idle_stop_min) and DEADMAN_MARKER not in setup_script:
        raise UserError(f"experiment {options.name}: its {SETUP_SCRIPT} predates the dead-man switch, so the pod "
                        f"would ignore --max-lifetime-hours and --idle-stop-minutes: merge the harness's main branch "
                        f"into {options.name} (or pass --max-lifetime-hours 0 --idle-stop-minutes 0 to launch "
                        "without one)")
    repo_url, notes = clone_url(url)
    pushed = git.remote_head(remote, options.name)
    if pushed is None:
        raise UserError(f"experiment {options.name}: not on remote {remote}: git push -u {remote} {options.name}")
    if pushed != commit:
        raise UserError(f"experiment {options.name}: local branch is at {commit[:7]} but {remote} has {pushed[:7]}: "
                        f"push (git push {remote} {options.name}) or pull first, so the pod runs what you checked")
    return Checked(commit, path, result["config"], repo_url, notes, start_command(setup_script))


class OptionProblem(UserError):
    """What is wrong is the command's options (the same for every experiment), not the branch."""


class NoCapacity(UserError):
    """RunPod's catalog has no pod of this GPU type to rent (there, or at all): nothing was rented."""


def config_option_problems(options: LaunchOptions, config: dict) -> list[str]:
    """Options that the experiment's config needs."""
    if config.get("report_to_wandb") and not options.wandb_secret:
        return ["the config reports to W&B (report_to_wandb=True) but no --wandb-secret NAME was given: "
                "name the RunPod secret holding your W&B key, or set report_to_wandb=False in the branch"]
    return []


def option_problems(options: LaunchOptions) -> list[str]:
    """The options' own problems, whatever the experiment."""
    problems = []
    if options.spot and (options.bid is None or not options.bid > 0):
        problems.append("--spot needs --bid USD, the most you pay per GPU-hour (e.g. --bid 0.35)")
    if options.bid is not None and not options.spot:
        problems.append("--bid is for spot pods: add --spot, or drop --bid for an on-demand pod")
    for option, value in (("--wandb-secret", options.wandb_secret), ("--hf-secret", options.hf_secret),
                          ("--git-secret", options.git_secret)):
        if value is not None:
            problems += _secret_name_problems(option, value)
    if options.fallback_on_demand and not options.spot:
        problems.append("--fallback-on-demand is for spot pods: add --spot, or drop it")
    if options.volume_id and options.cloud == "COMMUNITY":
        problems.append("--volume-id with --cloud COMMUNITY: network volumes exist only in Secure Cloud "
                        "(drop --cloud, or --volume-id for a pod volume)")
    for option, value in (("--gpu", options.gpu), ("--image", options.image), ("--volume-id", options.volume_id),
                          ("--wandb-entity", options.wandb_entity)):
        if value is not None and (not value.strip() or _UNSAFE.search(value)):
            problems.append(f"{option} {value!r}: must be non-empty, without quotes, backslashes or newlines")
    return problems


def _secret_name_problems(option: str, value: str) -> list[str]:
    # Never echo `value` here: a user who pasted the secret itself must not see it printed back.
    looks_secret = _TOKEN_SHAPES.search(value) or any(
        value == os.environ.get(var) for var in SECRET_VARIABLES)
    if looks_secret:
        return [f"{option}: that looks like a secret's value; give the NAME of a RunPod secret "
                "(RunPod console > Secrets), never the value"]
    if not SECRET_NAME.match(value):
        return [f"{option}: a RunPod secret name is letters, digits, '_' and '-' (at most 64)"]
    return []


def pod_env(options: LaunchOptions, checked: Checked, run_id: str, price: float | None = None) -> dict[str, str]:
    env = {
        "GIT_REPO": checked.repo_url,
        "GIT_BRANCH": options.name,
        # The commit checked above: the pod trains exactly it, whatever is pushed later.
        "GIT_COMMIT": checked.commit,
        "CONFIG_PATH": checked.config_path,
        "VOLUME_PATH": VOLUME_MOUNT,
        "AUTO_STOP": "1" if options.auto_stop else "0",
        "WANDB_RUN_ID": run_id,
        # The trainer prices the pod as RunPod bills it when no rate is given (training.cost).
        PRICING_VAR: SPOT if options.spot else ON_DEMAND,
    }
    if options.smoke:
        env["SMOKE"] = "1"  # setup_pod.sh then runs training.pod.smoke on the branch's config
    if options.wandb_entity:
        env["WANDB_ENTITY"] = options.wandb_entity
    if price is not None:
        # The pod's cost tracking asks RunPod for the pod's own rate first; this (the catalog's list
        # price for the whole pod, or the spot bid) is its fallback.
        env[POD_RATE_ENV] = f"{price:g}"
    # The dead-man switch of start_command: the pod stops itself however the run (or its controller) fares.
    if options.max_lifetime_h:
        env["MAX_LIFETIME_S"] = str(int(options.max_lifetime_h * 3600))
    if options.idle_stop_min:
        env["IDLE_STOP_S"] = str(int(options.idle_stop_min * 60))
    for var, secret in (("WANDB_API_KEY", options.wandb_secret), ("HF_TOKEN", options.hf_secret), ("GIT_TOKEN", options.git_secret)):
        if secret:
            env[var] = secret_reference(secret)
    return env


def secret_reference(name: str) -> str:
    """RunPod replaces `{{ RUNPOD_SECRET_<name> }}` with the secret's value inside the pod."""
    return "{{ RUNPOD_SECRET_" + name + " }}"


def cloud_type(options: LaunchOptions) -> str:
    # REST v2 knows SECURE and COMMUNITY (its default SECURE); network volumes live in Secure Cloud.
    return options.cloud or "SECURE"


def pod_request(options: LaunchOptions, env: dict[str, str], data_center: str | None, start: str) -> dict:
    """The body of POST /v2/pods for an on-demand pod (CreatePodRequest, validated strictly by RunPod)."""
    if options.volume_id:
        mounts = {"network": [{"volumeId": options.volume_id, "path": VOLUME_MOUNT}]}
    else:
        mounts = {"persistent": {"size": POD_VOLUME_GB, "path": VOLUME_MOUNT}}
    body = {
        "name": pod_name(options.name),
        "image": options.image,
        "gpu": {"id": options.gpu, "count": 1, "minCudaVersion": HOST_MIN_CUDA},
        "cloud": cloud_type(options),
        "disk": CONTAINER_DISK_GB,
        "args": start,
        "env": env,
        "mounts": mounts,
        "startSsh": True,
    }
    if data_center:
        body["dataCenterIds"] = [data_center]
    return body


def spot_input(options: LaunchOptions, env: dict[str, str], data_center: str | None, start: str) -> dict:
    """The PodRentInterruptableInput of a spot pod: the on-demand pod's settings in GraphQL's names."""
    fields = {
        "name": pod_name(options.name),
        "imageName": options.image,
        "gpuTypeId": options.gpu,
        "cloudType": cloud_type(options),
        "gpuCount": 1,
        "bidPerGpu": options.bid,
        "minCudaVersion": HOST_MIN_CUDA,
        "containerDiskInGb": CONTAINER_DISK_GB,
        "volumeInGb": 0 if options.volume_id else POD_VOLUME_GB,
        "volumeMountPath": VOLUME_MOUNT,
        "dockerArgs": start,
        "env": [{"key": k, "value": v} for k, v in env.items()],
        "startSsh": True,
    }
    if options.volume_id:
        fields["networkVolumeId"] = options.volume_id
        fields["dataCenterId"] = data_center
    return fields


def wandb_line(config: dict, entity: str | None, run_id: str) -> str:
    if not config.get("report_to_wandb"):
        return "off (report_to_wandb=False)"
    project = config.get("wandb_project") or "well-log-ocr"
    if entity:
        return f"https://wandb.ai/{entity}/{project}/runs/{run_id}"
    return (f"run id {run_id} in project {project}; entity unknown, so no URL "
            "(set WANDB_ENTITY or pass --wandb-entity)")


@dataclass
class Placement:
    data_center: str | None  # the network volume's, else None (RunPod picks)
    list_price: float | None  # the catalog's on-demand USD per hour


def place(api: runpod_client.Api, options: LaunchOptions) -> Placement:
    """Where the pod can go, checked before anything is rented: the GPU type exists and has pods to
    rent, in the network volume's data center when there is one (else the data centers that have it)."""
    cloud = cloud_type(options)
    data_center = None
    if options.volume_id:
        data_center = api.network_volume(options.volume_id).get("dataCenter")
    gpu = api.gpu_type(options.gpu, cloud, min_cuda=HOST_MIN_CUDA)
    offered = runpod_client.data_centers_with(gpu)
    where = ", ".join(f"{dc} ({level})" for dc, level in offered) or "none right now"
    if data_center and data_center not in {dc for dc, _ in offered}:
        raise NoCapacity(f"--gpu {options.gpu!r}: not offered in {data_center}, the data center of network volume "
                        f"{options.volume_id} ({cloud} cloud, hosts with CUDA >= {HOST_MIN_CUDA}); data centers that "
                        f"have it: {where}. Pick another --gpu, or a volume in one of those")
    if not offered:
        raise NoCapacity(f"--gpu {options.gpu!r}: no pods to rent in {cloud} cloud on hosts with CUDA >= "
                        f"{HOST_MIN_CUDA} right now (RunPod's catalog); try another --gpu or later")
    return Placement(data_center, runpod_client.list_price(gpu, cloud))


def refuse_unsafe_for_spot(env: dict[str, str]) -> None:
    unsafe = [k for k, v in env.items() if _UNSAFE.search(v)]
    if unsafe:
        raise UserError(f"cannot send {', '.join(unsafe)}: a quote or backslash breaks the spot request")


def rent(api: runpod_client.Api, options: LaunchOptions, checked: Checked, run_id: str, out):
    """Place and create the pod: (pod as RunPod answered, what kind it is, where it went). Spot first
    when asked; SpotUnavailable when none can be had and no --fallback-on-demand."""
    placement = place(api, options)
    if options.spot:
        env = pod_env(options, checked, run_id, options.bid)
        refuse_unsafe_for_spot(env)
        try:
            pod = api.create_spot(spot_input(options, env, placement.data_center, checked.start_command))
            return pod, f"spot, bid ${options.bid:g}/GPU-hour", placement
        except runpod_client.LaunchUnconfirmed as lost:
            lost.price = options.bid  # what the pod bills if it exists
            raise
        except runpod_client.SpotUnavailable as unavailable:
            if not options.fallback_on_demand:
                raise runpod_client.SpotUnavailable(
                    f"{unavailable}: nothing was rented. Add --fallback-on-demand to launch on-demand "
                    f"instead{_at(placement.list_price)}", gone=unavailable.gone) from None
            print(f"{unavailable}; --fallback-on-demand: launching on-demand{_at(placement.list_price)}", file=out)
    try:
        pod = api.create_pod(pod_request(options, pod_env(options, checked, run_id, placement.list_price),
                                         placement.data_center, checked.start_command))
    except runpod_client.LaunchUnconfirmed as lost:
        lost.price = placement.list_price
        raise
    return pod, "on-demand (spot could not be had)" if options.spot else "on-demand", placement


def launch(git: Git, options: LaunchOptions, out) -> int:
    options.wandb_entity = options.wandb_entity or os.environ.get("WANDB_ENTITY") or None
    checked = check(git, options)
    for note in checked.notes:
        print(f"note: {note}", file=out)
    if not options.volume_id:
        print("note: no --volume-id: the run writes to a pod volume, which RunPod deletes with the pod, checkpoints "
              "and all, when the account balance reaches $0; keep them on a network volume (--volume-id)", file=out)
    run_id = f"{options.name}-{secrets.token_hex(4)}"
    env = pod_env(options, checked, run_id)
    if options.spot:
        refuse_unsafe_for_spot(env)  # before a dry run too: it shows what would be sent
    if options.dry_run:
        kind = f"spot, bid ${options.bid:g}/GPU-hour" if options.spot else "on-demand"
        data_center = "<data center of the volume, looked up when sent>" if options.volume_id else None
        print(f"dry run: nothing was sent. Experiment {options.name} @ {checked.commit[:7]}, {options.gpu}, {kind}:", file=out)
        print(_show_request(options, env, data_center, checked.start_command), file=out)
        print(f"W&B: {wandb_line(checked.config, options.wandb_entity, run_id)}", file=out)
        return EXIT_OK

    api = runpod_client.connect()
    existing = runpod_client.experiment_pods(api, options.name)
    if existing:
        pod = existing[0]
        raise UserError(f"experiment {options.name} already has pod {pod.get('id')} ({pod.get('status')}): "
                        f"start it again in the RunPod console, or `stop {options.name} --terminate` it before a new launch")
    pod, kind, placement = rent(api, options, checked, run_id, out)
    pod_id = pod.get("id")
    # The pod is rented from here on: its id is printed before anything else can fail.
    print(f"pod {pod_id} launched for {options.name} @ {checked.commit[:7]}: {options.gpu}, {kind}", file=out, flush=True)
    price = runpod_client.pod_rate(pod)
    if price is None:
        try:
            price = runpod_client.pod_rate(api.pod(pod_id))
        except UserError as problem:
            print(f"price: not read ({problem})", file=out)
    budget = checked.config.get("budget_cap")
    shown = _usd(price) if price is not None else f"{_usd(placement.list_price)} (list price; not billed yet)"
    print(f"  price   {shown}/h", file=out)
    print(f"  budget  {'no cap (budget_cap=0)' if not budget else _usd(budget) + ' (budget_cap)'}", file=out)
    print(f"  W&B     {wandb_line(checked.config, options.wandb_entity, run_id)}", file=out)
    print(f"  follow  python -m training.experiment status {options.name}", file=out)
    print(f"  stop    python -m training.experiment stop {options.name}", file=out)
    return EXIT_OK


def _at(price: float | None) -> str:
    return f" at the list price {_usd(price)}/h" if price is not None else ""


def _usd(value) -> str:
    return f"${value:.2f}" if isinstance(value, (int, float)) else "unknown"


def _show_request(options: LaunchOptions, env: dict[str, str], data_center: str | None, start: str) -> str:
    if options.spot:
        return (f"POST $RUNPOD_API_BASE_URL/graphql (runpod.api.graphql.run_graphql_query):\n"
                f"{runpod_client.spot_mutation(spot_input(options, env, data_center, start))}")
    return f"POST $RUNPOD_API_BASE_URL/v2/pods\n{json.dumps(pod_request(options, env, data_center, start), indent=2)}"
