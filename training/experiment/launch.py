"""`launch`: check an experiment branch, then rent a pod that clones it and runs scripts/setup_pod.sh.

Checks before any request: the branch exists, its config validates as the branch has it, the branch
is pushed (local head == the remote's head), the secrets are given by name, no pod of the
experiment exists. The pod gets the setup_pod.sh environment (DESIGN.md), secrets only as RunPod
secret references `{{ RUNPOD_SECRET_<name> }}`, and a start command that clones the branch.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass

from training.errors import UserError
from training.experiment import configfile, runpod_client
from training.experiment.gitops import Git, clone_url
from training.experiment.names import config_path, name_problems, pod_name

DEFAULT_GPU = "NVIDIA GeForce RTX 4090"  # 24 GB: Qwen3-VL 2B in 4-bit with room for batch 2
DEFAULT_IMAGE = "runpod/pytorch:1.0.3-cu1281-torch280-ubuntu2204"
VOLUME_MOUNT = "/runpod_volume"
CONTAINER_DISK_GB = 40  # the clone, pip's cache and the environment setup_pod.sh installs
# Without --volume-id the run writes to a pod volume: it survives stop and spot preemption, and is
# deleted with the pod on terminate.
POD_VOLUME_GB = 50
# Runs on the pod: clone the branch (a fresh copy each start, so a restarted spot pod runs it again)
# and hand over to setup_pod.sh. One line with no double quote or backslash: the SDK writes it into
# its mutation unescaped. The token goes to git as a header in its environment, never into a URL,
# a file or the output. A failed clone (wrong URL, private repo without --git-secret) stops the pod
# with runpodctl (in RunPod's images) when AUTO_STOP=1, rather than restarting and billing forever.
START_SCRIPT = "; ".join([
    "set -eu",
    "D=${EXPERIMENT_SRC:-/root/experiment}",
    "rm -rf $D",
    "if [ ${GIT_TOKEN:+set}x = setx ]; then export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraHeader",
    "GIT_CONFIG_VALUE_0=$(echo Authorization: Basic $(printf x-access-token:%s $GIT_TOKEN | base64 -w0))",
    "export GIT_CONFIG_VALUE_0; fi",
    "if ! git clone --quiet --depth 1 --single-branch --branch $GIT_BRANCH $GIT_REPO $D; then "
    "echo clone of branch $GIT_BRANCH failed: check GIT_REPO and --git-secret >&2",
    "if [ ${AUTO_STOP:-0} = 1 ]; then runpodctl stop pod ${RUNPOD_POD_ID:-unknown} || true; fi",
    "exit 1; fi",
    "unset GIT_CONFIG_COUNT GIT_CONFIG_KEY_0 GIT_CONFIG_VALUE_0",
    "cd $D",
    "exec bash scripts/setup_pod.sh",
])
START_COMMAND = f"bash -c '{START_SCRIPT}'"
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
    dry_run: bool = False


@dataclass
class Checked:
    commit: str
    config_path: str
    config: dict
    repo_url: str
    notes: list[str]


def check(git: Git, o: LaunchOptions) -> Checked:
    problems = name_problems(o.name)
    if problems:
        raise UserError(*problems)
    commit = git.branch_commit(o.name)
    if commit is None:
        raise UserError(f"unknown experiment {o.name!r}: no local branch of that name "
                        "(create it with `python -m training.experiment new`)")
    path = o.config or config_path(o.name)
    if not git.has_file(commit, path):
        raise UserError(f"experiment {o.name}: branch has no {path} (pass --config PATH for another file)")
    result = configfile.validate(git, commit, {}, [path])[path]
    if result["problems"]:
        raise UserError(*[f"experiment {o.name}: {p}" for p in result["problems"]])
    problems += _option_problems(o, result["config"])
    remote = o.remote or git.remote_of(o.name)
    url = git.remote_url(remote)
    if url is None:
        problems.append(f"no remote {remote!r}: add one (git remote add {remote} URL) and push {o.name} to it")
    if problems:
        raise UserError(*problems)
    repo_url, notes = clone_url(url)
    pushed = git.remote_head(remote, o.name)
    if pushed is None:
        raise UserError(f"experiment {o.name}: not on remote {remote}: git push -u {remote} {o.name}")
    if pushed != commit:
        raise UserError(f"experiment {o.name}: local branch is at {commit[:7]} but {remote} has {pushed[:7]}: "
                        f"push (git push {remote} {o.name}) or pull first, so the pod runs what you checked")
    return Checked(commit, path, result["config"], repo_url, notes)


def _option_problems(o: LaunchOptions, config: dict) -> list[str]:
    problems = []
    if o.spot and (o.bid is None or not o.bid > 0):
        problems.append("--spot needs --bid USD, the most you pay per GPU-hour (e.g. --bid 0.35)")
    if o.bid is not None and not o.spot:
        problems.append("--bid is for spot pods: add --spot, or drop --bid for an on-demand pod")
    if config.get("report_to_wandb") and not o.wandb_secret:
        problems.append("the config reports to W&B (report_to_wandb=True) but no --wandb-secret NAME was given: "
                        "name the RunPod secret holding your W&B key, or set report_to_wandb=False in the branch")
    for option, value in (("--wandb-secret", o.wandb_secret), ("--hf-secret", o.hf_secret),
                          ("--git-secret", o.git_secret)):
        if value is not None:
            problems += _secret_name_problems(option, value)
    for option, value in (("--gpu", o.gpu), ("--image", o.image), ("--volume-id", o.volume_id),
                          ("--wandb-entity", o.wandb_entity)):
        if value is not None and (not value.strip() or _UNSAFE.search(value)):
            problems.append(f"{option} {value!r}: must be non-empty, without quotes, backslashes or newlines")
    return problems


def _secret_name_problems(option: str, value: str) -> list[str]:
    # Never echo `value` here: a user who pasted the secret itself must not see it printed back.
    looks_secret = _TOKEN_SHAPES.search(value) or any(
        value == os.environ.get(var) for var in ("WANDB_API_KEY", "HF_TOKEN", "GIT_TOKEN", "RUNPOD_API_KEY"))
    if looks_secret:
        return [f"{option}: that looks like a secret's value; give the NAME of a RunPod secret "
                "(RunPod console > Secrets), never the value"]
    if not SECRET_NAME.match(value):
        return [f"{option}: a RunPod secret name is letters, digits, '_' and '-' (at most 64)"]
    return []


def pod_env(o: LaunchOptions, checked: Checked, run_id: str) -> dict[str, str]:
    env = {
        "GIT_REPO": checked.repo_url,
        "GIT_BRANCH": o.name,
        # The commit checked above: the pod trains exactly it, whatever is pushed later.
        "GIT_COMMIT": checked.commit,
        "CONFIG_PATH": checked.config_path,
        "VOLUME_PATH": VOLUME_MOUNT,
        "AUTO_STOP": "1" if o.auto_stop else "0",
        "WANDB_RUN_ID": run_id,
    }
    if o.wandb_entity:
        env["WANDB_ENTITY"] = o.wandb_entity
    if o.spot:
        # Cost tracking and the budget cap count what a spot pod can cost at most: the bid.
        env["GPU_HOURLY_RATE"] = f"{o.bid:g}"
    for var, secret in (("WANDB_API_KEY", o.wandb_secret), ("HF_TOKEN", o.hf_secret), ("GIT_TOKEN", o.git_secret)):
        if secret:
            env[var] = secret_reference(secret)
    return env


def secret_reference(name: str) -> str:
    """RunPod replaces `{{ RUNPOD_SECRET_<name> }}` with the secret's value inside the pod."""
    return "{{ RUNPOD_SECRET_" + name + " }}"


def cloud_type(o: LaunchOptions) -> str:
    # Network volumes live in Secure Cloud data centers.
    return o.cloud or ("SECURE" if o.volume_id else "ALL")


def sdk_arguments(o: LaunchOptions, env: dict[str, str], data_center: str | None) -> dict:
    """Keyword arguments of runpod.create_pod for an on-demand pod."""
    kwargs = {
        "name": pod_name(o.name),
        "image_name": o.image,
        "gpu_type_id": o.gpu,
        "cloud_type": cloud_type(o),
        "gpu_count": 1,
        "container_disk_in_gb": CONTAINER_DISK_GB,
        "volume_in_gb": 0 if o.volume_id else POD_VOLUME_GB,
        "volume_mount_path": VOLUME_MOUNT,
        "docker_args": START_COMMAND,
        "env": env,
        "support_public_ip": True,
        "start_ssh": True,
    }
    if o.volume_id:
        kwargs["network_volume_id"] = o.volume_id
        kwargs["data_center_id"] = data_center
    return kwargs


def spot_input(o: LaunchOptions, env: dict[str, str], data_center: str | None) -> dict:
    """The PodRentInterruptableInput of a spot pod: the on-demand pod's fields, camelCase, plus the bid."""
    fields = {_camel(k): v for k, v in sdk_arguments(o, env, data_center).items()}
    fields["env"] = [{"key": k, "value": v} for k, v in env.items()]
    fields["bidPerGpu"] = o.bid
    return fields


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def wandb_line(config: dict, entity: str | None, run_id: str) -> str:
    if not config.get("report_to_wandb"):
        return "off (report_to_wandb=False)"
    project = config.get("wandb_project") or "well-log-ocr"
    if entity:
        return f"https://wandb.ai/{entity}/{project}/runs/{run_id}"
    return (f"run id {run_id} in project {project}; entity unknown, so no URL "
            "(set WANDB_ENTITY or pass --wandb-entity)")


def launch(git: Git, o: LaunchOptions, out) -> int:
    o.wandb_entity = o.wandb_entity or os.environ.get("WANDB_ENTITY") or None
    checked = check(git, o)
    for note in checked.notes:
        print(f"note: {note}", file=out)
    run_id = f"{o.name}-{secrets.token_hex(4)}"
    env = pod_env(o, checked, run_id)
    unsafe = [k for k, v in env.items() if _UNSAFE.search(v)]
    if unsafe and not o.spot:
        raise UserError(f"cannot send {', '.join(unsafe)}: a quote or backslash breaks the SDK's request")
    kind = f"spot, bid ${o.bid:g}/GPU-hour" if o.spot else "on-demand"
    if o.dry_run:
        data_center = "<data center of the volume, looked up when sent>" if o.volume_id else None
        print(f"dry run: nothing was sent. Experiment {o.name} @ {checked.commit[:7]}, {o.gpu}, {kind}:", file=out)
        print(_show_request(o, env, data_center), file=out)
        print(f"W&B: {wandb_line(checked.config, o.wandb_entity, run_id)}", file=out)
        return 0

    runpod = runpod_client.connect()
    existing = runpod_client.experiment_pods(runpod, o.name)
    if existing:
        pod = existing[0]
        raise UserError(f"experiment {o.name} already has pod {pod.get('id')} ({pod.get('desiredStatus')}): "
                        f"resume it in the RunPod console, or `stop {o.name} --terminate` it before a new launch")
    data_center = runpod_client.volume_data_center(runpod, o.volume_id) if o.volume_id else None
    if o.spot:
        pod = runpod_client.create_spot(spot_input(o, env, data_center))
        price = pod.get("costPerHr")
    else:
        pod = runpod_client.create_on_demand(runpod, sdk_arguments(o, env, data_center))
        price = None
    pod_id = pod.get("id")
    # The pod is rented from here on: its id is printed before anything else can fail.
    print(f"pod {pod_id} launched for {o.name} @ {checked.commit[:7]}: {o.gpu}, {kind}", file=out, flush=True)
    if price is None:
        try:
            price = (runpod_client.call("read pod", runpod.get_pod, pod_id) or {}).get("costPerHr")
        except UserError as problem:
            print(f"price: unknown ({problem})", file=out)
    budget = checked.config.get("budget_cap")
    print(f"  price   {_usd(price)}/h", file=out)
    print(f"  budget  {'no cap (budget_cap=0)' if not budget else _usd(budget) + ' (budget_cap)'}", file=out)
    print(f"  W&B     {wandb_line(checked.config, o.wandb_entity, run_id)}", file=out)
    print(f"  follow  python -m training.experiment status {o.name}", file=out)
    print(f"  stop    python -m training.experiment stop {o.name}", file=out)
    return 0


def _usd(value) -> str:
    return f"${value:.2f}" if isinstance(value, (int, float)) else "unknown"


def _show_request(o: LaunchOptions, env: dict[str, str], data_center: str | None) -> str:
    if o.spot:
        return (f"POST $RUNPOD_API_BASE_URL/graphql (runpod.api.graphql.run_graphql_query):\n"
                f"{runpod_client.spot_mutation(spot_input(o, env, data_center))}")
    lines = ["runpod.create_pod("]
    for key, value in sdk_arguments(o, env, data_center).items():
        if isinstance(value, dict):
            lines.append(f"    {key}={{")
            lines += [f"        {k!r}: {v!r}," for k, v in value.items()]
            lines.append("    },")
        else:
            lines.append(f"    {key}={value!r},")
    lines.append(")")
    return "\n".join(lines)
