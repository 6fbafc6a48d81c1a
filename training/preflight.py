"""Checks that run before anything costly: each names what failed and what to do about it.

Every check runs, whatever the others found, and the results are logged as one table; any failure
makes `check_or_raise` raise a UserError (exit 2) listing them all. No check creates a file.
Network checks (hub, W&B) go through `training.retry`: transient errors are tried three times.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from configs.base import SYNTHETIC_DATASET, TrainingConfig
from training import estimates
from training.data.sources import dataset_kind
from training.errors import UserError
from training.git_cli import git_output
from training.hub.access import HubAccessError, check_hub_repo, is_local_path
from training.model.backends import TRANSFORMERS, UNSLOTH
from training.model.standin import is_standin
from training.retry import NetworkCallFailed, call
from training.wandb_env import DEFAULT_BASE_URL, api_key, requested_mode

log = logging.getLogger("training")

# What wandb itself asks to verify a key (wandb-core's AuthHandler: `query Viewer`): a key is valid
# exactly when the server resolves a viewer for it.
WANDB_VIEWER_QUERY = "query Viewer { viewer { id entity username } }"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # passed, but worth a look

    @property
    def verdict(self) -> str:
        return "FAIL" if not self.ok else "warn" if self.warning else "ok"


# --- output dir ------------------------------------------------------------------------------

def nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def can_write_in(directory: str) -> bool:
    """Whether a file can be created in `directory`: tried for real (read-only mounts, immutable
    dirs and root's permissions all fool os.access), and removed at once."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def disk_verdict(target: str, free: float, needed: float) -> Check:
    if free < needed:
        return Check("output dir", False, f"output_dir={target!r}: {estimates.gib(free)} free, the run needs about "
                                          f"{estimates.gib(needed)} for its checkpoints; free some space, use a "
                                          "larger volume, or lower keep_best/keep_recent")
    return Check("output dir", True, f"{target} ({estimates.gib(free)} free, needs ~{estimates.gib(needed)})")


def check_output_dir(config: TrainingConfig, backend: str | None) -> Check:
    target = config.output_dir
    existing = nearest_existing(target)
    if existing == os.path.abspath(target) and not os.path.isdir(target):
        return Check("output dir", False, f"output_dir={target!r}: exists and is not a directory; "
                                          "choose another output_dir")
    if not os.path.isdir(existing) or not can_write_in(existing):
        return Check("output dir", False, f"output_dir={target!r}: {existing} is not writable; "
                                          "choose a writable output_dir or fix its permissions")
    needed = estimates.checkpoint_disk_bytes(config, estimates.model_shape(config.model_name), backend or "")
    return disk_verdict(target, shutil.disk_usage(existing).free, needed)


# --- dataset ---------------------------------------------------------------------------------

def check_dataset(config: TrainingConfig) -> Check:
    name = config.dataset_name
    kind = dataset_kind(name)
    if kind == "synthetic":
        if name != SYNTHETIC_DATASET:
            return Check("dataset", False, f"dataset_name={name!r}: the only synthetic set is {SYNTHETIC_DATASET!r}")
        return Check("dataset", True, f"synthetic: {name}")
    if kind == "local":
        problem = local_dataset_problem(Path(os.path.expanduser(name)), config.image_column, config.text_column,
                                        config.max_bad_sample_fraction)
        if problem:
            return Check("dataset", False, f"dataset_name={name!r}: {problem}")
        return Check("dataset", True, f"local: {name}")
    return hub_check("dataset", "dataset_name", name)


def local_dataset_problem(path: Path, image_column: str, text_column: str,
                          max_bad_fraction: float = 0.0) -> str | None:
    """Why the local dataset at `path` cannot be read, or None. Reads headers and metadata only."""
    if not path.exists():
        return "no such file or directory; give an existing folder or parquet file"
    if path.is_file():
        if path.suffix != ".parquet":
            return None  # csv/json files: their columns are checked when loading
        return _column_problem(_parquet_columns(path), image_column, text_column, path)
    metadata = sorted(p for pattern in ("metadata.jsonl", "metadata.csv", "*/metadata.jsonl", "*/metadata.csv")
                      for p in path.glob(pattern))
    if metadata:
        for source in metadata:
            try:
                columns = _metadata_columns(source, max_bad_fraction)
            except (OSError, ValueError) as error:
                return f"{source}: cannot be parsed ({error})"
            problem = _column_problem(columns, image_column, text_column, source)
            if problem:
                return problem
        return None
    parquet = sorted(path.rglob("*.parquet"))
    if parquet:
        return _column_problem(_parquet_columns(parquet[0]), image_column, text_column, parquet[0])
    return ("no metadata.jsonl, metadata.csv or parquet files in it; see README 'Data' for the layouts "
            "that are read")


def _parquet_columns(path: Path) -> list[str] | str:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as error:  # not parquet, truncated, unreadable
        return f"{path}: not a readable parquet file ({type(error).__name__}: {error})"


def _metadata_columns(source: Path, max_bad_fraction: float) -> list[str]:
    """Columns of an imagefolder's metadata: its own (file_name becomes `image`); every row parsed."""
    with open(source, encoding="utf-8", newline="") as handle:
        if source.suffix == ".csv":
            rows = list(csv.DictReader(handle))
            columns = list(rows[0]) if rows else []
        else:
            rows = [json.loads(line) for line in handle if line.strip()]
            columns = sorted({key for row in rows for key in row})
    if not rows:
        raise ValueError("no rows")
    if "file_name" not in columns:
        raise ValueError("no file_name column naming each image")
    # Every row, not a sample of them: a stat per file is cheap next to a run that dies on one.
    missing = [row["file_name"] for row in rows if not (source.parent / str(row["file_name"])).is_file()]
    if len(missing) / len(rows) > max_bad_fraction:
        raise ValueError(f"{len(missing)} of {len(rows)} images listed in it are missing, more than "
                         f"max_bad_sample_fraction={max_bad_fraction:g}: image {missing[0]!r} does not exist beside it")
    return ["image"] + [c for c in columns if c != "file_name"]


def _column_problem(columns: list[str] | str, image_column: str, text_column: str, source: Path) -> str | None:
    if isinstance(columns, str):
        return columns
    missing = [f"{field}={value!r}" for field, value in (("image_column", image_column), ("text_column", text_column))
               if value not in columns]
    if missing:
        return f"{' and '.join(missing)}: not a column of {source} (columns: {', '.join(columns)})"
    return None


# --- model -----------------------------------------------------------------------------------

def check_model(config: TrainingConfig) -> Check:
    name = config.model_name
    if is_standin(name):
        return Check("model", True, f"stand-in: {name} (built locally)")
    if is_local_path(name):
        path = Path(os.path.expanduser(name))
        if not path.is_dir():
            return Check("model", False, f"model_name={name!r}: no such directory; give a hub id or a "
                                         "folder saved with save_pretrained")
        if not (path / "config.json").is_file() or not any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir()):
            return Check("model", False, f"model_name={name!r}: no config.json and *.safetensors weights in it; "
                                         "give a folder saved with save_pretrained")
        return Check("model", True, f"local: {name}")
    return hub_check("model", "model_name", name)


def hub_check(kind: str, field: str, name: str) -> Check:
    """A hub repository that exists and that HF_TOKEN (or no token) may read."""
    label = kind
    try:
        check_hub_repo(kind, name)
    except HubAccessError as error:
        if error.offline:
            return Check(label, True, f"hub: {name} not checked (offline mode: it must be in the cache)",
                         warning=True)
        return Check(label, False, f"{field}={name!r}: {error}")
    return Check(label, True, f"hub: {name}")


# --- backend and GPU -------------------------------------------------------------------------

def check_backend(config: TrainingConfig, backend: str | None, problem: str | None) -> Check:
    """The backend train.py chose (training.model.loading.choose_backend), or why it could not choose."""
    from training.model.loading import bitsandbytes_installed, cuda_available, prepare_backend, unsloth_installed

    if backend is None:
        return Check("backend", False, problem or "no backend")
    has_cuda, has_unsloth = cuda_available(), unsloth_installed()
    if backend == UNSLOTH:
        # Now, before the checks below bring in transformers; an install that cannot import fails here.
        try:
            prepare_backend(backend)
        except Exception as error:
            return Check("backend", False, f"unsloth does not import ({type(error).__name__}: {error}); "
                                           f"{GPU_EXTRA_FIX}")
    return backend_verdict(config, backend, has_cuda, has_unsloth, bitsandbytes_installed())


GPU_EXTRA_FIX = "install the GPU environment: bash scripts/install.sh gpu (unsloth, bitsandbytes)"


def backend_verdict(config: TrainingConfig, backend: str, has_cuda: bool, has_unsloth: bool,
                    has_bitsandbytes: bool) -> Check:
    """Whether `backend` can load the model as configured: 4 bits take Unsloth and bitsandbytes."""
    from training.model.loading import prequantized

    name = config.model_name
    quantized = prequantized(name)
    if backend == TRANSFORMERS and quantized and has_cuda:  # without CUDA the gpu row says what to do
        fix = GPU_EXTRA_FIX if not has_unsloth else "set backend='auto' to train it with Unsloth"
        return Check("backend", False, f"model_name={name!r} is pre-quantized to 4 bits (bitsandbytes), which the "
                                       f"transformers backend does not train; {fix}")
    if backend == TRANSFORMERS and config.backend == "auto" and has_cuda and config.load_in_4bit \
            and not is_standin(name):
        return Check("backend", False, f"load_in_4bit=True on this GPU needs the Unsloth backend, and unsloth is not "
                                       f"installed: {GPU_EXTRA_FIX}; or set load_in_4bit=false to train in 16 bits")
    if backend == UNSLOTH and (config.load_in_4bit or quantized) and not has_bitsandbytes:
        return Check("backend", False, f"4-bit loading needs bitsandbytes, which is not installed: {GPU_EXTRA_FIX}")
    if backend == TRANSFORMERS and config.load_in_4bit and has_cuda and not is_standin(name):
        return Check("backend", True, f"{backend}: load_in_4bit=True is ignored, the base trains in 16 bits",
                     warning=True)
    return Check("backend", True, backend)


@dataclass(frozen=True)
class Gpu:
    name: str
    free: float  # bytes
    total: float


@dataclass(frozen=True)
class Cuda:
    """What decides whether torch can use an NVIDIA GPU."""
    driver: str | None  # the NVIDIA driver's version (nvidia-smi); None = no NVIDIA driver
    torch_cuda: str | None  # torch.version.cuda: the CUDA torch was built for; None = a CPU build
    error: str | None = None  # torch's own words when CUDA is unusable


REINSTALL_TORCH = ("reinstall torch for this driver: bash scripts/install.sh gpu picks the build (on a pod, delete "
                   "its venv under $VOLUME_PATH/venvs/ so that setup_pod.sh installs it again)")


def detect_cuda() -> Cuda:
    import torch

    from training.pod.cuda_build import driver_version

    error = None
    if not torch.cuda.is_available():
        try:
            torch.cuda.init()  # is_available() keeps the reason to itself; init() raises with it
        except Exception as failure:
            error = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
    return Cuda(driver_version(), torch.version.cuda, error)


def unusable_cuda(cuda: Cuda) -> str | None:
    """Why torch cannot use this host's GPU, when it has an NVIDIA driver; None without one."""
    import torch

    from training.pod.cuda_build import driver_supports, minimum_driver

    if cuda.driver is None:
        return None
    if cuda.torch_cuda is None:
        return f"NVIDIA driver {cuda.driver} found, but torch {torch.__version__} is a CPU build; {REINSTALL_TORCH}"
    if not driver_supports(cuda.driver, cuda.torch_cuda):
        return (f"NVIDIA driver {cuda.driver} found, but torch is built for CUDA {cuda.torch_cuda} "
                f"(torch.version.cuda), which needs driver >= {minimum_driver(cuda.torch_cuda)}; {REINSTALL_TORCH}")
    return (f"NVIDIA driver {cuda.driver} runs CUDA {cuda.torch_cuda}, yet torch cannot use the GPU "
            f"({cuda.error or 'torch.cuda.is_available() is False'}); check that the container was given the "
            "GPU (nvidia-smi, CUDA_VISIBLE_DEVICES)")


def detect_gpu() -> Gpu | None:
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    return Gpu(torch.cuda.get_device_name(0), free, total)


def needs_gpu(config: TrainingConfig, backend: str | None) -> bool:
    """A real model in 4 bits (bitsandbytes) or the Unsloth backend cannot run without CUDA."""
    from training.model.loading import prequantized

    return backend == UNSLOTH or prequantized(config.model_name) or (
        config.load_in_4bit and not is_standin(config.model_name))


def no_gpu_fix(model_name: str) -> str:
    from training.model.loading import prequantized, unquantized_name

    if not prequantized(model_name):
        return "set load_in_4bit=false to train in full precision on the CPU (slow)"
    base = unquantized_name(model_name)
    # Its weights are 4-bit whatever load_in_4bit says: only another checkpoint runs on the CPU.
    model = f"the unquantized model (--set model_name={base})" if base else "an unquantized model"
    return f"the checkpoint itself is 4-bit (bitsandbytes): to train on the CPU (slow) use {model} with " \
           "--set load_in_4bit=false"


def gpu_verdict(config: TrainingConfig, backend: str | None, gpu: Gpu | None, cuda: Cuda | None = None) -> Check:
    if gpu is None:
        why = unusable_cuda(cuda) if cuda else None
        if needs_gpu(config, backend):
            fix = why or f"run it on a GPU pod, or {no_gpu_fix(config.model_name)}"
            return Check("gpu", False, f"model_name={config.model_name!r} with load_in_4bit={config.load_in_4bit} "
                                       f"needs a CUDA GPU and none was found; {fix}")
        if why:
            return Check("gpu", True, f"training on the CPU: {why}", warning=True)
        return Check("gpu", True, "none needed: training on the CPU")
    shape = estimates.model_shape(config.model_name)
    if shape is None:
        return Check("gpu", True, f"{gpu.name}, {estimates.gib(gpu.free)} free (no memory estimate for "
                                  f"{config.model_name!r})", warning=True)
    needed = estimates.gpu_memory_bytes(config, shape, backend or TRANSFORMERS)
    build = f" (driver {cuda.driver or '?'}, torch CUDA {cuda.torch_cuda})" if cuda else ""
    detail = f"{gpu.name}{build}: the run needs about {estimates.gib(needed)} with {estimates.image_bound(config)}, " \
             f"{estimates.gib(gpu.free)} free of {estimates.gib(gpu.total)}"
    if needed > gpu.free:
        return Check("gpu", False, f"{detail}; lower per_device_train_batch_size (raise "
                                   "gradient_accumulation_steps to compensate), set gradient_checkpointing=true "
                                   "or a lower image_max_pixels, or use a larger GPU")
    return Check("gpu", True, detail)


def check_gpu(config: TrainingConfig, backend: str | None) -> Check:
    return gpu_verdict(config, backend, detect_gpu(), detect_cuda())


# --- target lengths --------------------------------------------------------------------------

TARGETS_MEASURED = 100  # transcriptions of each split (eval, train) whose length in tokens is measured


def target_tokenizer(config: TrainingConfig):
    """The model's own tokenizer (tokenizer.json, read by `tokenizers` alone: no transformers)."""
    from tokenizers import Tokenizer

    from training.hub.access import hf_token
    from training.model.loading import model_source

    source = model_source(config)  # the stand-in's folder (built on first use), a local folder or a hub id
    if os.path.isdir(os.path.expanduser(source)):
        path = os.path.join(os.path.expanduser(source), "tokenizer.json")
    else:
        from huggingface_hub import hf_hub_download

        path = call(f"tokenizer of {source}", lambda: hf_hub_download(source, "tokenizer.json", token=hf_token()))
    return Tokenizer.from_file(path)


def targets_verdict(lengths: list[int], max_new_tokens: int) -> Check:
    if not lengths:
        return Check("targets", True, "no transcriptions to measure", warning=True)
    longest, cut = max(lengths), sum(length > max_new_tokens for length in lengths)
    if cut:
        return Check("targets", True, f"{cut} of {len(lengths)} sampled transcriptions are longer than "
                                      f"max_new_tokens={max_new_tokens} (the longest: {longest} tokens): generation "
                                      f"would cut them and CER/WER count the cut as errors; set max_new_tokens to "
                                      f"at least {longest}", warning=True)
    return Check("targets", True, f"the longest of {len(lengths)} sampled transcriptions is {longest} tokens, "
                                  f"within max_new_tokens={max_new_tokens}")


def check_targets(config: TrainingConfig) -> Check:
    """Whether greedy decoding, capped at max_new_tokens, can produce whole transcriptions: their
    lengths as the model's tokenizer counts them (with the end-of-turn that stops generation)."""
    from training.data.collator import END_OF_TURN
    from training.data.sources import load_splits

    try:
        splits = load_splits(config)
        texts = splits.eval.texts(TARGETS_MEASURED) + splits.train.texts(TARGETS_MEASURED)
        tokenizer = target_tokenizer(config)
    except (UserError, NetworkCallFailed, OSError, ValueError) as error:
        reason = "; ".join(error.problems) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
        return Check("targets", True, f"not measured ({reason.split('. ')[0][:160]})", warning=True)
    lengths = [len(tokenizer.encode(text + END_OF_TURN, add_special_tokens=False).ids) for text in texts]
    return targets_verdict(lengths, config.max_new_tokens)


# --- cost ------------------------------------------------------------------------------------

def check_cost(config: TrainingConfig, environ: Mapping[str, str]) -> Check:
    """The hourly rate the run will be billed at and what the experiment has spent: both must be
    known for budget_cap to mean anything."""
    import time

    from training.cost import STARTED_VAR, pod_started_at, read_ledger, run_rate, session_usd
    from training.runpod.prices import pod_rate

    try:
        rate = run_rate(config, environ, pod=pod_rate(environ))
        pod_started_at(environ.get(STARTED_VAR), time.time())
        spent = session_usd(read_ledger(config.output_dir)["sessions"])
    except (ValueError, UserError) as error:
        return Check("cost", False, str(error))
    cap = f"budget_cap {config.budget_cap:.2f} USD" if config.budget_cap > 0 else "no budget_cap"
    return Check("cost", True, f"{rate.usd_per_hour:.2f} USD/h ({rate.source}); spent {spent:.2f} USD; {cap}")


# --- W&B -------------------------------------------------------------------------------------

def wandb_plan(report_to_wandb: bool, mode: str, has_key: bool) -> tuple[str, str]:
    """("skip" | "warn" | "validate", why): what the W&B check does in this environment."""
    if not report_to_wandb:
        return "skip", "report_to_wandb=False"
    if mode != "online":
        return "skip", f"WANDB_MODE={mode}: runs are not sent"
    if not has_key:
        # Not a failure: the run is then logged offline (training.wandb_env.wandb_mode decides alike).
        return "warn", ("no WANDB_API_KEY and no `wandb login` credentials: the run is logged offline, "
                        "to `wandb sync` later")
    return "validate", ""


def wandb_viewer(base_url: str, api_key: str) -> dict | None:
    """The account behind `api_key` on the W&B server at `base_url`, or None if it has none."""
    import requests

    def ask() -> dict:
        response = requests.post(f"{base_url.rstrip('/')}/graphql", json={"query": WANDB_VIEWER_QUERY},
                                 auth=("api", api_key), timeout=10)
        response.raise_for_status()
        return response.json()

    answer = call(f"W&B key check at {base_url}", ask)
    return (answer.get("data") or {}).get("viewer")


def check_wandb(config: TrainingConfig, environ: Mapping[str, str]) -> Check:
    key, source = api_key(environ)  # the key the run will go online with (tracking reads the same)
    mode = requested_mode(environ)
    action, why = wandb_plan(config.report_to_wandb, mode, bool(key))
    if action != "validate":
        return Check("wandb", True, why, warning=action == "warn")
    base_url = environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL
    try:
        viewer = wandb_viewer(base_url, key)
    except NetworkCallFailed as error:
        if error.status in (401, 403):
            return Check("wandb", False, f"{source} was rejected by {base_url} (HTTP {error.status}); copy a "
                                         "valid key from https://wandb.ai/authorize")
        return Check("wandb", False, f"{error}; check WANDB_BASE_URL and the network, or set WANDB_MODE=offline")
    if not viewer:
        return Check("wandb", False, f"{source} is not a key {base_url} knows; copy a valid key from "
                                     "https://wandb.ai/authorize")
    return Check("wandb", True, f"key valid (entity {viewer.get('entity') or viewer.get('username') or '?'}), "
                                f"project {config.wandb_project}")


# --- hub push --------------------------------------------------------------------------------

def check_hub_push(config: TrainingConfig, environ: Mapping[str, str]) -> Check:
    """push_to_hub uploads at the very end: a missing token is cheaper found before training."""
    from training.hub.publish import TOKEN_PAGE, hub_repo_id

    repo_id = hub_repo_id(config)
    if not environ.get("HF_TOKEN", "").strip():
        return Check("hub push", False, f"push_to_hub=True: HF_TOKEN is not set, so the upload to {repo_id} at the "
                                        f"end would fail; set it to a token with write access ({TOKEN_PAGE}) or "
                                        "--set push_to_hub=False")
    return Check("hub push", True, f"final/ to {repo_id} at the end ({'private' if config.hub_private else 'public'})")


# --- git -------------------------------------------------------------------------------------

def git_verdict(config_path: str, branch: str | None, commit: str | None, status: str | None) -> Check:
    if commit is None:
        return Check("git", True, "not a git checkout: the run cannot be traced to a commit", warning=True)
    where = f"{branch if branch and branch != 'HEAD' else 'detached HEAD'} @ {commit}"
    if status:
        state = "is not committed" if status.startswith("??") else "has uncommitted changes"
        return Check("git", True, f"{where}: {config_path} {state}; commit it so the run matches its commit",
                     warning=True)
    return Check("git", True, f"{where}, config committed")


def check_git(config_path: str | None) -> Check:
    if config_path is None:
        return Check("git", True, "no config file given: not checked", warning=True)
    path = os.path.abspath(config_path)
    cwd = os.path.dirname(path)
    return git_verdict(config_path, git_output(["rev-parse", "--abbrev-ref", "HEAD"], cwd),
                       git_output(["rev-parse", "--short", "HEAD"], cwd),
                       git_output(["status", "--porcelain", "--", path], cwd))


# --- the table -------------------------------------------------------------------------------

def guarded(name: str, check: Callable[[], Check]) -> Check:
    """A check that crashed is a failed check, so the others still run and are reported."""
    try:
        return check()
    except UserError as error:
        return Check(name, False, "; ".join(error.problems))
    except Exception as error:
        return Check(name, False, f"the check itself failed ({type(error).__name__}: {error})")


def run_checks(config: TrainingConfig, backend: str | None, problem: str | None = None,
               config_path: str | None = None, environ: Mapping[str, str] = os.environ) -> list[Check]:
    backend_check = check_backend(config, backend, problem)
    checks = [
        Check("config", True, f"{config_path or 'config'}: valid, experiment {config.experiment_name}"),
        guarded("output dir", lambda: check_output_dir(config, backend)),
        guarded("dataset", lambda: check_dataset(config)),
        guarded("model", lambda: check_model(config)),
        backend_check,
        guarded("gpu", lambda: check_gpu(config, backend)),
        guarded("cost", lambda: check_cost(config, environ)),
        guarded("targets", lambda: check_targets(config)),
        guarded("wandb", lambda: check_wandb(config, environ)),
        guarded("git", lambda: check_git(config_path)),
    ]
    if config.push_to_hub:
        checks.append(guarded("hub push", lambda: check_hub_push(config, environ)))
    return checks


def check_or_raise(config: TrainingConfig, backend: str | None, problem: str | None = None,
                   config_path: str | None = None) -> None:
    """Run every check for the chosen backend (None: `problem` says why there is none), log a
    table, raise UserError with each failure."""
    checks = run_checks(config, backend, problem, config_path)
    width = max(len(c.name) for c in checks)
    for check in checks:
        log.info("preflight  %-*s  %-4s  %s", width, check.name, check.verdict, check.detail)
    failures = [c.detail for c in checks if not c.ok]
    if failures:
        raise UserError(*failures)
