"""Shared fixtures: an offline environment, one stand-in build per session, the CLI as users run it."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["tmp_dirs"]  # module_mktemp

REPO = Path(__file__).resolve().parent.parent
QUICK_VAL = "configs/experiments/quick_val.py"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


# One intra-op thread in every process the suite starts. The suite runs several at once on 2 cores
# (pytest itself, the CLI runs it starts, torchrun's ranks, the fakes), and torch's OpenMP threads
# spin while they wait for each other when a core is taken: a 12-step quick_val run took 19 s with
# 1 thread and 94-119 s with torch's default 2 beside one other busy process (20 s alone).
OFFLINE_ENV.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # before anything here imports torch


# What the suite holds on disk at once (one module's runs: ~45 MB measured), with room to spare.
SUITE_PEAK_BYTES = 128 * 1024**2


def pytest_sessionstart(session) -> None:
    """A nearly full disk fails every test that trains with the same preflight error (13 of them
    on CI once): say it once, before anything runs, exit 2."""
    from configs.loader import load_config
    from training import estimates
    from training.model.backends import TRANSFORMERS
    from training.preflight import nearest_existing

    config = load_config(REPO / QUICK_VAL)
    per_run = estimates.checkpoint_disk_bytes(config, estimates.model_shape(config.model_name), TRANSFORMERS)
    where = nearest_existing(str(session.config.option.basetemp or tempfile.gettempdir()))
    free = shutil.disk_usage(where).free
    if free < per_run + SUITE_PEAK_BYTES:
        pytest.exit(f"{where}: {estimates.gib(free)} free, the tests need about {estimates.gib(per_run + SUITE_PEAK_BYTES)} "
                    f"(each run's disk check asks for {estimates.gib(per_run)}); free some space, or set TMPDIR "
                    "or --basetemp to a larger disk", returncode=2)


# The longest test files, longest first: make test's two workers take them before the short ones, so
# neither is left with a long file while the other has finished (xdist's loadfile hands out files in
# the order collected). Measured with --durations: a minute or more each.
LONGEST_FIRST = ("checkpointing/test_resume.py", "pod/test_setup_pod.py", "trainer/test_distributed.py",
                 "pod/test_smoke.py", "experiment/test_experiment_compare.py", "evaluation/test_generation.py")


def pytest_collection_modifyitems(items) -> None:
    def rank(item) -> int:
        path = item.path.relative_to(REPO / "tests").as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: within a file, and among the rest, the order stays as collected


def pytest_terminal_summary(terminalreporter) -> None:
    """Figures a test recorded for the reader (record_property("figures", line)), the last line of
    each test, after the results: they reach the terminal from pytest-xdist's workers too."""
    for outcome in ("passed", "failed"):
        for report in terminalreporter.getreports(outcome):
            lines = [value for name, value in report.user_properties if name == "figures"]
            if lines and report.when == "call":
                terminalreporter.write_line(lines[-1])


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory):
    """Every test and every CLI it starts runs offline, with one shared stand-in cache."""
    cache = os.environ.get("WELL_LOG_CACHE") or str(tmp_path_factory.mktemp("standin-cache"))
    saved = dict(os.environ)
    os.environ.update(OFFLINE_ENV, WELL_LOG_CACHE=cache)
    for secret in ("WANDB_API_KEY", "HF_TOKEN", "GIT_TOKEN", "RUNPOD_API_KEY", "VOLUME_PATH", "GPU_HOURLY_RATE"):
        os.environ.pop(secret, None)
    yield cache
    os.environ.clear()
    os.environ.update(saved)


def wait_for(predicate, timeout: float = 300, poll: float = 0.05) -> bool:
    """Whether `predicate()` came true within `timeout` seconds, checked every `poll` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


def run_cli(args: list[str], env: dict | None = None, timeout: float = 300, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `python <args>` from the repository root as a user would, capturing its output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


def train_here(output_dir: Path, *overrides: str, config: str = QUICK_VAL, extra: tuple[str, ...] = ()) -> Finished:
    """train.py's own main() in this process: the same CLI, without 5 s of interpreter start-up.
    Subprocess runs (`train`) remain for what needs a process: signals, kills, imports."""
    from training.train import main

    args = ["--config", config, "--set", f"output_dir={output_dir}"]
    for override in overrides:
        args += ["--set", override]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(args + list(extra))
        except SystemExit as exit_:  # argparse errors
            code = exit_.code
    return Finished(code, out.getvalue(), err.getvalue())


def train(output_dir: Path, *overrides: str, config: str = QUICK_VAL, extra: tuple[str, ...] = (),
          env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    args = ["training/train.py", "--config", config, "--set", f"output_dir={output_dir}"]
    for override in overrides:
        args += ["--set", override]
    return run_cli(args + list(extra), env=env, timeout=timeout)


def start_training(output_dir: Path, overrides: tuple[str, ...], launcher: tuple[str, ...] = (), resume: bool = False,
                   env: dict | None = None) -> subprocess.Popen:
    """train.py on quick_val in a process of its own (after `launcher`, e.g. torchrun's arguments), its
    output on one pipe: for what needs a process to signal or kill."""
    args = [sys.executable, *launcher, "training/train.py", "--config", QUICK_VAL, "--set", f"output_dir={output_dir}"]
    for override in overrides:
        args += ["--set", override]
    if resume:
        args += ["--resume", "auto"]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


# torch's device queries answering for one GPU: the GPU paths of the CLI on a machine without one.
# Only torch's hardware boundary is replaced; everything of ours runs as it would on a pod.
FAKE_CUDA = """import torch
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
torch.cuda.get_device_name = lambda device=None: {name!r}
torch.cuda.mem_get_info = lambda device=None: (79 * 2**30, 80 * 2**30)
"""


def fake_gpu(directory: Path, name: str = "NVIDIA H100 80GB HBM3") -> dict:
    """The environment for a CLI subprocess that sees one GPU called `name` (through a
    sitecustomize in `directory`, which goes first on PYTHONPATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(FAKE_CUDA.format(name=name))
    return {"PYTHONPATH": str(directory)}


@pytest.fixture(scope="session")
def memorised(tmp_path_factory) -> Path:
    """output_dir/final of a run that memorised the first 8 synthetic train headers: a model whose
    greedy transcriptions are exact and end where the targets do."""
    out = tmp_path_factory.mktemp("memorise") / "run"
    result = train_here(out, "train_subset=8", "per_device_train_batch_size=8", "gradient_accumulation_steps=1",
                        "max_steps=150", "lr_scheduler_type=constant", "eval_subset=1",
                        "eval_steps=1000", "save_steps=1000", "logging_steps=50")
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "final"


@pytest.fixture(scope="session")
def volume_server():
    """A network volume's S3 API (moto's S3 server behind RunPod's documented rules: tests/fake_volume.py),
    started once for the session, in its own process, on 127.0.0.1."""
    import fake_volume

    server = fake_volume.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """The output_dir of a real quick run with three evaluated checkpoints (steps 2, 4, 6) and final/,
    as a pod writes it to the network volume."""
    out = tmp_path_factory.mktemp("small-run") / "small-run"
    result = train_here(out, "experiment_name=small-run", "max_steps=6", "eval_steps=2", "save_steps=2", "keep_best=3",
                        "keep_recent=3", "train_subset=16", "eval_subset=2", "eval_generate_samples=2",
                        "max_new_tokens=16", "logging_steps=1")
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture
def volume_cli(api, volume_server, monkeypatch, capsys, tmp_path):
    """The experiment CLI in this interpreter with what a user exports for the network volume: the S3
    keys and RUNPOD_API_KEY for `api` (the module's FakeRunPod); none of this machine's AWS settings;
    every output checked for the keys."""
    from experiment_repo import in_process
    from fake_runpod import API_KEY

    run = in_process(monkeypatch, capsys)
    keys = (volume_server.access_key, volume_server.secret_key, API_KEY)
    base = {**volume_server.env(), "RUNPOD_API_BASE_URL": api.url, "RUNPOD_API_KEY": API_KEY, "HOME": str(tmp_path),
            "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": "",
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"), "AWS_CONFIG_FILE": str(tmp_path / "no-config")}

    def call(*args, env=None):
        result = run(tmp_path, *args, env={**base, **(env or {})})
        for key in keys:
            assert key not in result.stdout + result.stderr
        return result

    return call
