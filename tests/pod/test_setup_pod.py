"""scripts/setup_pod.sh and the supervisor it hands over to (`python -m training.pod run`) end to end
on the CPU: a local "git host", a temp dir as the network volume, SKIP_INSTALL=1 with this venv's
Python, and local fakes of RunPod's API and of an HTTPS git remote. Some runs go through the start
command `launch` gives a pod, which carries the script inside it."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import QUICK_VAL, REPO, wait_for
from fake_servers import FakeServer, Reply, failing_first, git_http, runpod_api, stop_requests
from training import errors, redaction, retry
from training.experiment.launch import start_command
from training.outcome import RunOutcome
from training.outcome_line import read as read_outcome

SCRIPT = REPO / "scripts" / "setup_pod.sh"
BRANCH = "exp/pod-test"
CHECKPOINTS = "checkpoints/exp-pod-test"  # output_dir: <volume>/checkpoints/<branch, / as ->
LONG_OUTPUT = "runs/pod-long"  # pod_long's relative output_dir, which belongs on the volume
POD_ID = "pod-7fa3c1"
# Configs only the test branch has: the experiment a user would commit there.
BRANCH_CONFIGS = {
    "configs/experiments/pod_long.py": (
        '"""quick_val, longer: time enough to preempt it between checkpoints."""\n'
        "import dataclasses\n\n"
        "from configs.experiments.quick_val import config as parent\n\n"
        "config = dataclasses.replace(parent, max_steps=12, output_dir='runs/pod-long')\n"),
    "configs/experiments/pod_tiny.py": (
        '"""quick_val, two steps: the whole path in a few seconds."""\n'
        "import dataclasses\n\n"
        "from configs.experiments.quick_val import config as parent\n\n"
        "config = dataclasses.replace(parent, max_steps=2, save_steps=1, eval_steps=2)\n"),
    "configs/experiments/pod_cluster.py": (
        '"""quick_val on two nodes: checkpoints only when stopped, no evaluation, so the test is fast."""\n'
        "import dataclasses\n\n"
        "from configs.experiments.quick_val import config as parent\n\n"
        "config = dataclasses.replace(parent, max_steps=8, save_steps=1000, eval_steps=1000)\n"),
}
# Made up per run, so the only place they can be found is where something leaked them.
SECRETS = {name: f"{prefix}{secrets.token_hex(16)}" for name, prefix in
           (("GIT_TOKEN", "ghp_"), ("WANDB_API_KEY", ""), ("HF_TOKEN", "hf_"), ("RUNPOD_API_KEY", "rpa_"))}


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.com",
           "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def origin(module_mktemp) -> Path:
    """A bare repository whose BRANCH holds this working tree as it is (uncommitted work included)
    plus BRANCH_CONFIGS."""
    root = module_mktemp("git-host")
    work = root / "work"
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO).split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():  # a tracked file deleted in the working tree is left out
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, work / name)
    for name, text in BRANCH_CONFIGS.items():
        (work / name).write_text(text)
    git("init", "-q", "-b", BRANCH, cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "experiment branch", cwd=work)
    bare = root / "repos" / "well-log-ocr.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=root)
    return bare


def pod_env(volume: Path, origin: Path, **extra: str | None) -> dict:
    env = {**os.environ, "GIT_REPO": str(origin), "GIT_BRANCH": BRANCH, "CONFIG_PATH": QUICK_VAL,
           "VOLUME_PATH": str(volume), "SKIP_INSTALL": "1", "RETRY_WAIT_SECONDS": "0.01",
           # SKIP_INSTALL=1 runs the first python3 on PATH: this environment's.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.update(extra)
    return {name: value for name, value in env.items() if value is not None}


def run_pod(env: dict, cwd: Path, timeout: float = 240, command: tuple[str, ...] = ("bash",)):
    return subprocess.run([*command, str(SCRIPT)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def start_argv() -> list[str]:
    """The start command `launch` gives a pod, with this tree's setup_pod.sh inside, split as RunPod does."""
    return shlex.split(start_command(SCRIPT.read_bytes()))


def checkpoint_steps(output_dir: Path) -> list[int]:
    found = (re.fullmatch(r"checkpoint-(\d+)", p.name) for p in output_dir.glob("checkpoint-*") if p.is_dir())
    return sorted(int(match.group(1)) for match in found if match)


def logs(volume: Path) -> list[Path]:
    return sorted((volume / "logs").glob("training-*.log"))


def autostop(server: FakeServer) -> dict:
    return {"AUTO_STOP": "1", "RUNPOD_POD_ID": POD_ID, "RUNPOD_API_KEY": SECRETS["RUNPOD_API_KEY"],
            "RUNPOD_API_BASE_URL": server.url}


# --- a finished run ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(origin, module_mktemp):
    """quick_val through the pod's real start command, as a launched pod runs it."""
    volume, cwd = module_mktemp("volume"), module_mktemp("cwd")
    with FakeServer(runpod_api) as runpod, open(cwd / "out.txt", "w") as sink:
        process = subprocess.Popen(start_argv(), cwd=cwd, env=pod_env(volume, origin, TMPDIR=str(cwd), **autostop(runpod)),
                                   stdout=sink, stderr=subprocess.STDOUT)
        try:
            returncode = process.wait(timeout=600)  # ~30 s alone; far more on a machine shared by many
        finally:
            stop(process)
        # Read the moment it exits: in a container everything else dies with the main process, so
        # the log must be complete by then.
        log_at_exit = [p.read_text() for p in logs(volume)]
    output = (cwd / "out.txt").read_text()
    training_started = (cwd / f"harness-training-started-{process.pid}").exists()  # the idle clock's start
    return (volume, subprocess.CompletedProcess(process.args, returncode, output, ""), stop_requests(runpod), log_at_exit,
            training_started)


def test_end_to_end_clones_logs_and_checkpoints_on_the_volume(finished, origin):
    volume, result, _, log_at_exit, _ = finished
    assert result.returncode == 0, result.stdout + result.stderr
    clone = volume / "repo" / BRANCH
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=clone) == BRANCH
    assert git("rev-parse", "HEAD", cwd=clone) == git("rev-parse", BRANCH, cwd=origin)
    out = volume / CHECKPOINTS
    assert (out / "final" / "adapter_model.safetensors").is_file()
    assert checkpoint_steps(out)  # which ones are kept is the retention policy's business
    assert (out / "metrics.jsonl").is_file()
    [text] = log_at_exit
    for line in ("cloning exp/pod-test", "setup done", "preflight  git", "step 10/10", "final adapter",
                 "training ended with exit code 0: finished", f"asked RunPod to stop pod {POD_ID}"):
        assert line in text, line
    assert text == result.stdout  # the terminal saw what the log keeps, stderr included
    assert read_outcome(text.splitlines()) == read_outcome(["run-outcome: outcome=finished exit=0 step=10 phase=training"])


def test_auto_stop_stops_the_pod_once_after_a_finished_run(finished):
    _, result, stops, _, _ = finished
    assert stops == [POD_ID], result.stdout
    assert f"asked RunPod to stop pod {POD_ID}" in result.stdout


def test_train_py_started_the_dead_man_switchs_idle_clock(finished):
    assert finished[4], "train.py never created TRAINING_STARTED_FILE: an idle stop would never start counting"


def test_auto_stop_after_a_failing_run(origin, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    with FakeServer(runpod_api) as runpod:
        result = run_pod(pod_env(volume, origin, CONFIG_PATH="configs/experiments/typo.py", **autostop(runpod)),
                         cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert "--config configs/experiments/typo.py: no such file" in result.stdout
    assert stop_requests(runpod) == [POD_ID]
    assert not (volume / "checkpoints").exists()


def test_unknown_branch_fails_at_once_and_still_stops_the_pod(origin, tmp_path):
    # No clone, so no harness Python: the stop goes out through curl, the same v2 action as training.pod.commands's.
    # Through the start command: its one clone is setup_pod.sh's.
    volume = tmp_path / "volume"
    volume.mkdir()
    with FakeServer(runpod_api) as runpod:
        env = pod_env(volume, origin, GIT_BRANCH="exp/no-such-branch", **autostop(runpod))
        result = subprocess.run(start_argv(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout
    assert "git clone failed (permanent error, not retried)" in result.stdout
    assert "setup ended with exit code 2: bad environment" in result.stdout
    reading = read_outcome(result.stdout.splitlines())  # the fleet's reader, on setup_pod.sh's own line
    assert (reading.outcome, reading.exit_code, reading.phase, reading.step) == (RunOutcome.FAILED, 2, "setup", None)
    assert "try 1/3" not in result.stdout
    assert stop_requests(runpod) == [POD_ID]
    assert runpod.requests[0].headers["Authorization"] == f"Bearer {SECRETS['RUNPOD_API_KEY']}"
    assert SECRETS["RUNPOD_API_KEY"] not in result.stdout + result.stderr


# --- preemption and restart -----------------------------------------------------------------------

def stop(process: subprocess.Popen) -> None:
    """End a script a test gave up on: SIGTERM first, so it stops the trainer it started."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_file(path: Path, process: subprocess.Popen, timeout: float = 180) -> None:
    wait_for(lambda: path.exists() or process.poll() is not None, timeout=timeout, poll=0.2)
    assert path.exists(), (f"setup_pod.sh exited ({process.returncode}) before {path} appeared"
                           if process.poll() is not None else f"{path} did not appear within {timeout}s")


def preempt_at_checkpoint_5(env: dict, volume: Path, output: Path, timeout: float = 90) -> int:
    """Run pod_long, SIGTERM it (as RunPod preempts) once checkpoint-5 is saved; its exit code."""
    with open(output, "w") as sink:
        process = subprocess.Popen(["bash", str(SCRIPT)], cwd=volume.parent, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT)
        try:
            wait_for_file(volume / LONG_OUTPUT / "checkpoint-5" / "trainer_state.json", process)
            process.send_signal(signal.SIGTERM)
            return process.wait(timeout=timeout)
        finally:
            stop(process)


@pytest.fixture(scope="module")
def preempted(origin, module_mktemp):
    """A run of pod_long killed by SIGTERM (as RunPod preempts) once its first checkpoint is saved."""
    volume = module_mktemp("volume")
    output = module_mktemp("out") / "first.txt"
    with FakeServer(runpod_api) as runpod:
        env = pod_env(volume, origin, CONFIG_PATH="configs/experiments/pod_long.py", **autostop(runpod))
        returncode = preempt_at_checkpoint_5(env, volume, output)
    checkpoints = checkpoint_steps(volume / LONG_OUTPUT)
    return volume, returncode, output.read_text(), stop_requests(runpod), checkpoints


def test_preempted_run_exits_143_and_does_not_stop_the_pod(preempted):
    volume, returncode, output, stops, checkpoints = preempted
    assert returncode == 143, output
    assert stops == []
    assert "got SIGTERM: forwarding SIGTERM" in output  # the supervisor, which setup_pod.sh became
    assert "stopped during training (exit 143)" in output
    reading = read_outcome(output.splitlines())
    assert (reading.outcome, reading.exit_code, reading.phase) == (RunOutcome.PREEMPTED, 143, "training")
    assert reading.step is not None and reading.step < 12
    assert checkpoints and "step 12/12" not in output


@pytest.fixture(scope="module")
def restarted(preempted, origin, module_mktemp):
    """The same pod started again, after a new commit landed on the branch: the pod keeps training
    the commit it was launched with (GIT_COMMIT)."""
    volume, *_, checkpoints = preempted
    launched = git("rev-parse", BRANCH, cwd=origin)
    work = module_mktemp("push")
    git("clone", "-q", "--branch", BRANCH, str(origin), str(work / "c"), cwd=work)
    (work / "c" / "NOTES.md").write_text("a commit pushed while the pod was down\n")
    git("add", "NOTES.md", cwd=work / "c")
    git("commit", "-q", "-m", "notes", cwd=work / "c")
    git("push", "-q", "origin", BRANCH, cwd=work / "c")
    # Untracked files a run wrote into the clone (Unsloth's compile cache, a user's notes): a restart keeps them.
    (volume / "repo" / BRANCH / "unsloth_compiled_cache").mkdir(exist_ok=True)
    (volume / "repo" / BRANCH / "unsloth_compiled_cache" / "compiled.py").write_text("# compiled\n")
    with FakeServer(runpod_api) as runpod:
        result = run_pod(pod_env(volume, origin, CONFIG_PATH="configs/experiments/pod_long.py", GIT_COMMIT=launched,
                                 **autostop(runpod)), cwd=volume.parent)
    return volume, result, stop_requests(runpod), checkpoints, launched


def test_restart_keeps_the_launched_commit_and_finishes(restarted, origin):
    volume, result, stops, _, launched = restarted
    assert result.returncode == 0, result.stdout
    assert f"updating {volume / 'repo' / BRANCH} to the head of {BRANCH}" in result.stdout
    clone = volume / "repo" / BRANCH
    assert git("rev-parse", "HEAD", cwd=clone) == launched != git("rev-parse", BRANCH, cwd=origin)
    assert f"training stays on GIT_COMMIT={launched[:7]}" in result.stdout
    assert not (clone / "NOTES.md").exists()
    assert (clone / "unsloth_compiled_cache" / "compiled.py").is_file()
    assert (volume / LONG_OUTPUT / "final" / "adapter_model.safetensors").is_file()
    assert not (clone / "runs").exists()
    assert f"UNSLOTH_COMPILE_LOCATION={volume}/cache/unsloth_compiled_cache" in result.stdout
    assert len(logs(volume)) >= 1 and stops == [POD_ID]


def test_restart_resumes_from_the_last_checkpoint(restarted):
    volume, result, _, checkpoints, _ = restarted
    assert re.search(rf"resuming from \S*checkpoint-{checkpoints[-1]}\b", result.stdout), result.stdout
    assert "starting fresh" not in result.stdout


# --- secrets -------------------------------------------------------------------------------------

def test_git_token_reaches_git_and_nothing_else(origin, tmp_path):
    """A private HTTPS remote that wants the token, answering 503 twice first: cloned on the third
    try, and no secret in the output, the log, `bash -x`'s trace, .git/config or any file on the volume."""
    volume = tmp_path / "volume"
    volume.mkdir()
    trace = volume / "xtrace.txt"
    respond = failing_first(2, "/info/refs", git_http(str(origin.parent), "x-access-token", SECRETS["GIT_TOKEN"]))
    with FakeServer(respond) as host:
        env = pod_env(volume, origin, GIT_REPO=f"{host.url}/{origin.name}", CONFIG_PATH="configs/experiments/pod_tiny.py",
                      BASH_XTRACEFD="7", **SECRETS)
        result = run_pod(env, cwd=tmp_path, command=("bash", "-c", f'exec 7>"{trace}"; exec bash -x "$0"'))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "try 2/3, transient" in result.stdout and "try 3/3" not in result.stdout
    assert any(r.headers.get("Authorization", "").startswith("Basic ") for r in host.requests)
    assert (volume / CHECKPOINTS / "final").is_dir()
    assert trace.stat().st_size > 0 and (volume / "repo" / BRANCH / ".git" / "config").is_file()
    seen = {"output": result.stdout + result.stderr}
    seen.update({str(p): p.read_bytes().decode("latin-1") for p in volume.rglob("*") if p.is_file()})
    for name, secret in SECRETS.items():
        leaks = [where for where, text in seen.items() if secret in text]
        assert not leaks, f"{name} found in {leaks}"


# --- bad environments ------------------------------------------------------------------------------

def test_missing_variables_exit_2_with_one_line(origin, tmp_path):
    env = pod_env(tmp_path, origin, GIT_REPO=None, CONFIG_PATH=None)
    result = run_pod(env, cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    errors = [line for line in result.stdout.splitlines() if "error:" in line]
    assert len(errors) == 1 and "GIT_REPO CONFIG_PATH not set" in errors[0]
    assert not (tmp_path / "repo").exists()


def test_smoke_must_be_0_or_1(origin, tmp_path):
    result = run_pod(pod_env(tmp_path, origin, SMOKE="yes"), cwd=tmp_path, timeout=30)
    assert result.returncode == 2 and "SMOKE=yes: must be 1 (on) or 0 (off)" in result.stdout
    assert not (tmp_path / "repo").exists()


@pytest.mark.slow
def test_smoke_run_on_a_pod_replaces_training(origin, tmp_path):
    result = run_pod(pod_env(tmp_path, origin, SMOKE="1"), cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "every path passed" in result.stdout and "preflight: python" not in result.stdout
    assert len(list((tmp_path / "smoke").glob("*/final/eval-test.json"))) == 1


def test_missing_volume_exits_2_before_writing_anything(origin, tmp_path):
    result = run_pod(pod_env(tmp_path / "not-mounted", origin), cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert "VOLUME_PATH=" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "not-mounted").exists()


def test_without_volume_path_the_volume_is_found_where_runpod_mounts_it(origin, tmp_path):
    # A pod made by hand has its network volume at RunPod's default /workspace, not /runpod_volume.
    search = f"{tmp_path / 'runpod_volume'} {tmp_path / 'workspace'}"
    (tmp_path / "workspace").mkdir()
    env = pod_env(tmp_path, origin, VOLUME_PATH=None, VOLUME_SEARCH=search, CONFIG_PATH=None)
    result = run_pod(env, cwd=tmp_path, timeout=30)
    assert result.returncode == 2 and "CONFIG_PATH not set" in result.stdout  # stops after the volume is found
    assert f"log: {tmp_path / 'workspace'}/logs/training-" in result.stdout and len(logs(tmp_path / "workspace")) == 1

    (tmp_path / "workspace").rename(tmp_path / "elsewhere")
    result = run_pod(env, cwd=tmp_path, timeout=30)
    assert result.returncode == 2 and f"no volume at any of: {search}: attach the network volume" in result.stderr
    assert not (tmp_path / "runpod_volume").exists() and not (tmp_path / "workspace").exists()


def test_unreachable_remote_gives_up_after_3_tries(origin, tmp_path):
    with FakeServer(failing_first(100, "/", lambda request: None)) as host:
        result = run_pod(pod_env(tmp_path, origin, GIT_REPO=f"{host.url}/{origin.name}"), cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stdout
    assert "git clone failed (transient error, gave up after 3 tries)" in result.stdout
    assert host.count("/info/refs") == 3


def test_a_stalled_remote_is_abandoned_and_retried(origin, tmp_path):
    # A server that accepts and then sends nothing would keep a pod billing forever without a stall timeout.
    def stall(request):
        time.sleep(20)
        return None

    with FakeServer(stall) as host:
        env = pod_env(tmp_path, origin, GIT_REPO=f"{host.url}/{origin.name}", GIT_STALL_SECONDS="1")
        started = time.monotonic()
        result = run_pod(env, cwd=tmp_path, timeout=45)
    assert result.returncode == 1, result.stdout
    assert "git clone failed (transient error, gave up after 3 tries)" in result.stdout
    assert time.monotonic() - started < 30


def test_credentials_in_git_repo_are_moved_out_of_the_url_and_never_shown(origin, tmp_path):
    token = SECRETS["GIT_TOKEN"]
    respond = git_http(str(origin.parent), "ci-bot", token)
    with FakeServer(respond) as host:
        # No GIT_TOKEN: the only copy of the token is in the URL (as RunPod templates sometimes have it).
        env = pod_env(tmp_path, origin, GIT_REPO=f"http://ci-bot:{token}@127.0.0.1:{host.url.rsplit(':', 1)[1]}/"
                      f"{origin.name}", CONFIG_PATH="configs/experiments/typo.py")
        result = run_pod(env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout  # cloned, then the typo'd config fails preflight
    assert "GIT_REPO carried credentials" in result.stdout
    config = (tmp_path / "repo" / BRANCH / ".git" / "config").read_text()
    assert token not in result.stdout + result.stderr + config
    assert all(token not in p.read_text() for p in logs(tmp_path))


def test_plain_http_is_refused_when_a_git_secret_is_given(origin, tmp_path):
    env = pod_env(tmp_path, origin, GIT_REPO="http://git.example.invalid/acme/well-log-ocr.git",
                  GIT_TOKEN=SECRETS["GIT_TOKEN"])
    result = run_pod(env, cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stdout
    assert "GIT_REPO=http://git.example.invalid/acme/well-log-ocr.git: plain http" in result.stdout
    assert not (tmp_path / "repo").exists()


# A stand-in for `scripts/install.sh gpu` on a branch, which needs the GPU wheels of the internet:
# a "venv" whose python runs this one, and a count of the installs made into it.
FAKE_INSTALLER = f"""#!/usr/bin/env bash
set -euo pipefail
mkdir -p "$VENV/bin"
printf '#!/bin/sh\nexec {sys.executable} "$@"\n' >"$VENV/bin/python"
chmod +x "$VENV/bin/python"
echo install >>"$VENV/installs"
echo "${{PYTHON:-}}" >"$VENV/made-with"
"""


def push_with_fake_installer(origin: Path, tmp_path: Path, branch: str) -> Path:
    """A clone of BRANCH whose install.sh is FAKE_INSTALLER, pushed as `branch`: the clone."""
    work = tmp_path / "work"
    git("clone", "-q", "--branch", BRANCH, str(origin), str(work), cwd=tmp_path)
    (work / "scripts" / "install.sh").write_text(FAKE_INSTALLER)
    git("commit", "-qam", "installer stand-in", cwd=work)
    git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
    return work


def start_until_config(volume: Path, origin: Path, branch: str, **extra: str) -> None:
    """A pod start with installs, which ends at the branch's (missing) config."""
    env = pod_env(volume, origin, GIT_BRANCH=branch, SKIP_INSTALL="0", CONFIG_PATH="configs/experiments/typo.py",
                  **extra)
    result = run_pod(env, cwd=volume.parent)
    assert result.returncode == 2 and "no such file" in result.stdout, result.stdout


def test_branches_with_other_dependencies_get_their_own_venv(origin, tmp_path):
    work = push_with_fake_installer(origin, tmp_path, f"{BRANCH}-deps-a")
    with open(work / "pyproject.toml", "a") as out:
        out.write("# another dependency set\n")
    git("commit", "-qam", "other dependencies", cwd=work)
    git("push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}-deps-b", cwd=work)
    volume = tmp_path / "volume"
    volume.mkdir()
    for branch in ("deps-a", "deps-b", "deps-a"):  # the third start reuses deps-a's venv
        start_until_config(volume, origin, f"{BRANCH}-{branch}")
    venvs = sorted((volume / "venvs").glob("*/installs"))
    assert [p.read_text() for p in venvs] == ["install\n", "install\n"]  # two venvs, each installed once


def test_a_host_whose_driver_needs_another_torch_build_gets_its_own_venv(origin, tmp_path):
    # A venv on the volume holds the torch build of the host that installed it (training/pod/cuda_build.py):
    # a pod on a host with an older driver must not reuse a CUDA 13 build it cannot run.
    from test_cuda_build import fake_nvidia_smi

    push_with_fake_installer(origin, tmp_path, f"{BRANCH}-hosts")
    volume = tmp_path / "volume"
    volume.mkdir()
    for driver in ("580.82.07", "550.54.15", "580.82.07"):  # the third start reuses the first's venv
        start_until_config(volume, origin, f"{BRANCH}-hosts", **fake_nvidia_smi(tmp_path / driver, driver))
    venvs = sorted((volume / "venvs").glob("*/installs"))
    assert [p.read_text() for p in venvs] == ["install\n", "install\n"]


def pythons(directory: Path, python3: str, good: tuple[str, ...] = ()) -> dict:
    """PATH with a `python3` that is Python `python3`, python3.11/python3.12 that fail unless in
    `good` (then they are this test's own Python 3.11+)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "python3").write_text(f"#!/bin/sh\necho {python3}\n")
    for name in ("python3.11", "python3.12"):
        (directory / name).write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n" if name in good else
                                      "#!/bin/sh\necho 'not here' >&2\nexit 127\n")
    for tool in directory.iterdir():
        tool.chmod(0o755)
    return {"PATH": f"{directory}{os.pathsep}{os.environ['PATH']}"}


def test_an_image_whose_python3_is_too_old_installs_with_python3_11_or_3_12(origin, tmp_path):
    # numpy 2.4, pillow 13, matplotlib 3.11 and trl 1.15 need Python >= 3.11; RunPod's Ubuntu 22.04
    # images have 3.10 as python3, and 3.11 and 3.12 beside it.
    push_with_fake_installer(origin, tmp_path, f"{BRANCH}-python")
    volume = tmp_path / "volume"
    volume.mkdir()
    start_until_config(volume, origin, f"{BRANCH}-python", **pythons(tmp_path / "bin", "3.10", good=("python3.11",)))
    [made_with] = volume.glob("venvs/*/made-with")
    assert made_with.read_text().strip().endswith("python3.11")


def test_without_python_3_11_or_3_12_setup_stops_before_installing(origin, tmp_path):
    push_with_fake_installer(origin, tmp_path, f"{BRANCH}-nopython")
    volume = tmp_path / "volume"
    volume.mkdir()
    env = pod_env(volume, origin, GIT_BRANCH=f"{BRANCH}-nopython", SKIP_INSTALL="0",
                  **pythons(tmp_path / "bin", "3.10"))
    result = run_pod(env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    errors = [line for line in result.stdout.splitlines() if "error:" in line]
    assert len(errors) == 1 and "no Python 3.11 or 3.12 here (python3 is 3.10)" in errors[0]
    assert not (volume / "venvs").exists() or not any((volume / "venvs").glob("*/installs"))


def test_without_auto_stop_a_pod_parks_instead_of_exiting(origin, tmp_path):
    # An exit would make RunPod restart the container and train (and bill) again.
    env = pod_env(tmp_path, origin, CONFIG_PATH="configs/experiments/typo.py", RUNPOD_POD_ID=POD_ID)
    with open(tmp_path / "out.txt", "w") as sink:
        process = subprocess.Popen(["bash", str(SCRIPT)], cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "stays up" in (tmp_path / "out.txt").read_text() or process.poll() is not None,
                     timeout=60, poll=0.2)
            assert "stays up" in (tmp_path / "out.txt").read_text(), (tmp_path / "out.txt").read_text()
            time.sleep(0.5)
            assert process.poll() is None
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 2
        finally:
            stop(process)


# --- several GPUs: torchrun ------------------------------------------------------------------------

def test_several_gpus_train_under_torchrun_and_a_preemption_is_still_143(origin, tmp_path):
    """RUNPOD_GPU_COUNT=2 starts torchrun with two ranks (CPU ranks with gloo here). torchrun itself
    exits 1 when ranks exit 143; the script reads the run's own outcome from run_status.json."""
    volume = tmp_path / "volume"
    volume.mkdir()
    output = tmp_path / "first.txt"
    with FakeServer(runpod_api) as runpod:
        env = pod_env(volume, origin, CONFIG_PATH="configs/experiments/pod_long.py", RUNPOD_GPU_COUNT="2",
                      **autostop(runpod))
        returncode = preempt_at_checkpoint_5(env, volume, output)
        first = output.read_text()
        assert returncode == 143, first
        assert "--nproc_per_node=2" in first and stop_requests(runpod) == []
        again = run_pod(env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout
    assert re.search(r"resuming from \S*checkpoint-\d+", again.stdout)
    assert stop_requests(runpod) == [POD_ID]
    saved = [p.name for p in (volume / LONG_OUTPUT).glob("checkpoint-*/rng_state_*.pth")]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(saved)


# --- several nodes: an Instant Cluster ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_nodes(volume: Path, origin: Path, outputs: Path, interrupt=None) -> tuple[list[int], list[str]]:
    """Two nodes of one GPU (here one CPU rank, gloo) on 127.0.0.1 sharing `volume`, each its own
    setup_pod.sh with the variables RunPod sets on an Instant Cluster; `interrupt(nodes)` runs while
    they train. Their exit codes and outputs."""
    port, nodes = str(free_port()), []
    try:
        for rank in (0, 1):
            env = pod_env(volume, origin, CONFIG_PATH="configs/experiments/pod_cluster.py", NUM_NODES="2",
                          NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NUM_TRAINERS="1",
                          NODE_ADDR="127.0.0.1")
            with open(outputs / f"node{rank}.txt", "w") as sink:
                nodes.append(subprocess.Popen(["bash", str(SCRIPT)], cwd=volume.parent, env=env, stdout=sink,
                                              stderr=subprocess.STDOUT))
        if interrupt is not None:
            interrupt(nodes)
        codes = [node.wait(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            stop(node)
    return codes, [(outputs / f"node{rank}.txt").read_text() for rank in (0, 1)]


# Slow (about a minute: two bootstraps, each with two ranks, twice): tests/pod/test_cluster.py holds
# the launcher's arguments for every node, and the test above a preemption under torchrun.
@pytest.mark.slow
def test_two_nodes_sharing_a_volume_stop_together_and_resume(origin, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    out = volume / CHECKPOINTS

    def preempt_node_1(nodes):  # node 0 must stop at the same step
        wait_for_file(out / "metrics.jsonl", nodes[0])
        nodes[1].send_signal(signal.SIGTERM)

    codes, first = run_nodes(volume, origin, tmp_path, interrupt=preempt_node_1)
    assert codes == [143, 143], first
    assert "--nnodes=2 --node_rank=1 --master_addr=127.0.0.1" in first[1]
    # one clone and one log per node: nothing on the shared volume is written by both
    assert (volume / "repo" / BRANCH / ".git").is_dir() and (volume / "repo-node1" / BRANCH / ".git").is_dir()
    assert len(list((volume / "logs").glob("training-*-node1.log"))) == 1
    steps = checkpoint_steps(out)
    assert len(steps) == 1 and steps[0] < 8, first
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (out / f"checkpoint-{steps[0]}").iterdir()}

    codes, again = run_nodes(volume, origin, tmp_path)  # the cluster restarted
    assert codes == [0, 0], again
    assert f"resuming from {out / f'checkpoint-{steps[0]}'}" in again[0]
    assert (out / "final" / "adapter_model.safetensors").is_file()
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if "loss" in e] == list(range(1, 9)), "rank 0 alone writes metrics"


# --- one home for the exit codes and the retry policy ------------------------------------------------

def test_the_scripts_exit_codes_and_retries_are_the_harness_s():
    """The script needs them before Python exists; training/errors.py, training/retry.py and
    training/redaction.py own them."""
    text = SCRIPT.read_text()
    assert re.findall(r'^SECRET_VARIABLES="(.*)"$', text, re.M) == [" ".join(redaction.SECRET_VARIABLES)]
    assert text.count("WANDB_API_KEY HF_TOKEN") == 1, "the secrets' names written out a second time"
    copies = dict(re.findall(r"^([A-Z_]+)=(\d+)$", text, re.M))
    assert copies == {"EXIT_SETUP_FAILED": str(errors.EXIT_SETUP_FAILED), "EXIT_USER_ERROR": str(errors.EXIT_USER_ERROR),
                      "EXIT_PREEMPTED": str(errors.EXIT_PREEMPTED), "RETRY_ATTEMPTS": str(retry.ATTEMPTS),
                      "RETRY_DEFAULT_WAIT_SECONDS": f"{retry.DEFAULT_WAIT_SECONDS:g}",
                      "RETRY_MAX_WAIT_SECONDS": f"{retry.MAX_WAIT_SECONDS:g}"}
    code = "\n".join(line.split("#")[0] for line in text.splitlines())  # comments may name numbers
    assert not re.findall(r"\b(?:die|exit) +[0-9]*[1-9]", code), "an exit code written as a number"
    assert not re.findall(r"\b[0-9]+ tries|/[0-9]+\b.*transient|--retry [0-9]", code), "a retry count written as a number"


# --- the pod's self-stop and the dead-man switch ----------------------------------------------------

def pod_tools(directory: Path, runpodctl: str | None = "ok", gpu: str | None = None) -> dict:
    """PATH with a fake `runpodctl` ("ok": stops the pod; "fails": refuses, as with a bad key; None:
    absent) recording its arguments in directory/runpodctl.txt, and a fake `nvidia-smi` reporting
    GPU use `gpu` ("fail": exits as without a driver; None: absent)."""
    directory.mkdir(parents=True, exist_ok=True)
    calls = directory / "runpodctl.txt"
    if runpodctl:
        refuse = 'echo "Error: unauthorized: invalid api key" >&2; exit 1' if runpodctl == "fails" else 'echo "pod stopped"'
        (directory / "runpodctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n{refuse}\n')
    if gpu:
        (directory / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n" if gpu == "fail"
                                              else f"#!/bin/sh\necho '{gpu}'\n")
    for tool in directory.iterdir():
        tool.chmod(0o755)
    return {"PATH": f"{directory}{os.pathsep}{os.environ['PATH']}"}


def parked_pod(tmp_path: Path, wait_until, timeout: float = 20, **env: str) -> str:
    """The pod's start command with a setup that fails at once (no GIT_REPO) and parks, as a pod
    without AUTO_STOP does; its output once `wait_until(output)` holds or `timeout` passed."""
    volume, out = tmp_path / "volume", tmp_path / "out.txt"
    volume.mkdir(exist_ok=True)
    base = {"HOME": str(tmp_path), "TMPDIR": str(tmp_path), "VOLUME_PATH": str(volume), "RUNPOD_POD_ID": "pod42",
            "AUTO_STOP": "0", "IDLE_POLL_S": "1", "RETRY_WAIT_SECONDS": "0.01"}
    with open(out, "w") as sink:
        process = subprocess.Popen(start_argv(), cwd=tmp_path, env={**os.environ, **base, **env}, stdout=sink,
                                   stderr=subprocess.STDOUT)
        try:
            started = tmp_path / f"harness-training-started-{process.pid}"
            wait_for(lambda: "stays up" in out.read_text(), timeout=30, poll=0.1)
            if env.pop("_training", None):
                started.touch()  # what train.py does as it starts training
            wait_for(lambda: wait_until(out.read_text()), timeout=timeout, poll=0.2)
        finally:
            stop(process)
    return out.read_text()


@pytest.mark.parametrize("runpodctl, rest, said", [
    ("ok", None, ["stopped pod pod42 (runpodctl pod stop)"]),
    ("fails", 200, ["runpodctl pod stop pod42 failed (exit 1: Error: unauthorized: invalid api key); trying "
                    "RunPod's REST API", "asked RunPod to stop pod pod42 (REST API)"]),
    (None, 200, ["runpodctl is not on PATH (RunPod's images ship it); trying RunPod's REST API",
                 "asked RunPod to stop pod pod42 (REST API)"]),
])
def test_the_lifetime_limit_stops_the_pod_runpodctl_first_then_rest(tmp_path, runpodctl, rest, said):
    with FakeServer(runpod_api) as runpod:
        output = parked_pod(tmp_path, lambda out: said[-1] in out, MAX_LIFETIME_S="1",
                            RUNPOD_API_KEY=SECRETS["RUNPOD_API_KEY"], RUNPOD_API_BASE_URL=runpod.url,
                            **pod_tools(tmp_path / "bin", runpodctl))
    assert "dead-man switch: lifetime_1s_reached: stopping pod pod42" in output
    assert all(line in output for line in said), output
    calls = tmp_path / "bin" / "runpodctl.txt"
    assert (calls.read_text() if calls.exists() else "") == ("pod stop pod42\n" if runpodctl else "")
    assert stop_requests(runpod) == (["pod42"] if rest else [])
    assert SECRETS["RUNPOD_API_KEY"] not in output


def test_a_stop_that_fails_is_said_and_tried_again(tmp_path):
    refused = lambda request: Reply.json({"title": "Unauthorized", "status": 401, "detail": "bad key"}, status=401)  # noqa: E731
    with FakeServer(refused) as runpod:
        output = parked_pod(tmp_path, lambda out: out.count("dead-man switch: lifetime_1s_reached: stopping") >= 2,
                            MAX_LIFETIME_S="1", RUNPOD_API_KEY=SECRETS["RUNPOD_API_KEY"], RUNPOD_API_BASE_URL=runpod.url,
                            **pod_tools(tmp_path / "bin", "fails"))
    assert "error: RunPod's REST API did not stop pod pod42" in output
    assert "stop it in the RunPod console (Pods > the pod > Stop); it bills until then" in output
    assert "dead-man switch: the pod is not stopped; trying again in 1s" in output
    assert (tmp_path / "bin" / "runpodctl.txt").read_text().count("pod stop pod42") >= 2


@pytest.mark.parametrize("gpu, training, stops, said", [
    ("0", True, True, "dead-man switch: gpu_idle_2s: stopping pod pod42"),
    ("0", False, False, None),            # setup, downloads, model loading: the idle clock has not started
    ("97", True, False, None),
    ("[N/A]", True, False, "the GPU's use cannot be read"),   # MIG: unknown, never idle and never a crash
    ("fail", True, False, "the GPU's use cannot be read"),    # no driver answer: unknown too
])
def test_the_idle_clock_runs_once_training_has_started_and_only_on_a_readable_gpu(tmp_path, gpu, training, stops, said):
    output = parked_pod(tmp_path, lambda out: "stopping pod" in out, timeout=5, IDLE_STOP_S="2",
                        _training="1" if training else "", **pod_tools(tmp_path / "bin", "ok", gpu))
    assert ("stopping pod pod42" in output) is stops, output
    assert said is None or output.count(said) == 1, output
    assert "integer expression expected" not in output
