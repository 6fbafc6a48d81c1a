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
from configs.loader import git_output
from training import estimates
from training.data.sources import dataset_kind
from training.errors import UserError
from training.hub import HubAccessError, check_hub_repo, is_local_path
from training.retry import NetworkCallFailed, call
from training.standin import is_standin

log = logging.getLogger("training")

WANDB_DEFAULT_BASE_URL = "https://api.wandb.ai"
# What wandb itself asks to verify a key (wandb-core's AuthHandler: `query Viewer`): a key is valid
# exactly when the server resolves a viewer for it.
WANDB_VIEWER_QUERY = "query Viewer { viewer { id entity username } }"
WANDB_OFF_MODES = ("offline", "disabled", "dryrun")
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

def check_backend(config: TrainingConfig) -> tuple[Check, str | None]:
    from training.modeling import cuda_available, select_backend, unsloth_installed

    try:
        backend = select_backend(config, cuda_available(), unsloth_installed())
    except UserError as error:
        return Check("backend", False, error.problems[0]), None
    return Check("backend", True, backend), backend


@dataclass(frozen=True)
class Gpu:
    name: str
    free: float  # bytes
    total: float


def detect_gpu() -> Gpu | None:
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    return Gpu(torch.cuda.get_device_name(0), free, total)


def needs_gpu(config: TrainingConfig, backend: str | None) -> bool:
    """A real model in 4 bits (bitsandbytes) or the Unsloth backend cannot run without CUDA."""
    return backend == "unsloth" or (config.load_in_4bit and not is_standin(config.model_name))


def gpu_verdict(config: TrainingConfig, backend: str | None, gpu: Gpu | None) -> Check:
    if gpu is None:
        if needs_gpu(config, backend):
            return Check("gpu", False, f"model_name={config.model_name!r} with load_in_4bit=True needs a CUDA GPU "
                                       "and none was found; run it on a GPU pod, or set load_in_4bit=false to "
                                       "train in full precision on the CPU (slow)")
        return Check("gpu", True, "none needed: training on the CPU")
    shape = estimates.model_shape(config.model_name)
    if shape is None:
        return Check("gpu", True, f"{gpu.name}, {estimates.gib(gpu.free)} free (no memory estimate for "
                                  f"{config.model_name!r})", warning=True)
    needed = estimates.gpu_memory_bytes(config, shape, backend or "transformers")
    detail = f"{gpu.name}: the run needs about {estimates.gib(needed)}, {estimates.gib(gpu.free)} free " \
             f"of {estimates.gib(gpu.total)}"
    if needed > gpu.free:
        return Check("gpu", False, f"{detail}; lower per_device_train_batch_size (raise "
                                   "gradient_accumulation_steps to compensate), set gradient_checkpointing=true "
                                   "or image_max_pixels, or use a larger GPU")
    return Check("gpu", True, detail)


def check_gpu(config: TrainingConfig, backend: str | None) -> Check:
    return gpu_verdict(config, backend, detect_gpu())


# --- W&B -------------------------------------------------------------------------------------

def wandb_plan(report_to_wandb: bool, mode: str, has_key: bool) -> tuple[str, str]:
    """("skip" | "warn" | "validate", why): what the W&B check does in this environment."""
    if not report_to_wandb:
        return "skip", "report_to_wandb=False"
    if mode in WANDB_OFF_MODES:
        return "skip", f"WANDB_MODE={mode}: runs are not sent"
    if not has_key:
        # Not a failure: the run is then logged offline (or with `wandb login` credentials).
        return "warn", ("WANDB_API_KEY is not set: not checked; without `wandb login` credentials the run "
                        "is logged offline, to `wandb sync` later")
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
    key = environ.get("WANDB_API_KEY", "").strip()
    mode = environ.get("WANDB_MODE", "online").strip().lower() or "online"
    action, why = wandb_plan(config.report_to_wandb, mode, bool(key))
    if action != "validate":
        return Check("wandb", True, why, warning=action == "warn")
    base_url = environ.get("WANDB_BASE_URL") or WANDB_DEFAULT_BASE_URL
    try:
        viewer = wandb_viewer(base_url, key)
    except NetworkCallFailed as error:
        if error.status in (401, 403):
            return Check("wandb", False, f"WANDB_API_KEY was rejected by {base_url} (HTTP {error.status}); copy a "
                                         "valid key from https://wandb.ai/authorize")
        return Check("wandb", False, f"{error}; check WANDB_BASE_URL and the network, or set WANDB_MODE=offline")
    if not viewer:
        return Check("wandb", False, f"WANDB_API_KEY is not a key {base_url} knows; copy a valid key from "
                                     "https://wandb.ai/authorize")
    return Check("wandb", True, f"key valid (entity {viewer.get('entity') or viewer.get('username') or '?'}), "
                                f"project {config.wandb_project}")


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


def run_checks(config: TrainingConfig, config_path: str | None = None,
               environ: Mapping[str, str] = os.environ) -> tuple[list[Check], str | None]:
    backend_check, backend = check_backend(config)
    checks = [
        Check("config", True, f"{config_path or 'config'}: valid, experiment {config.experiment_name}"),
        guarded("output dir", lambda: check_output_dir(config, backend)),
        guarded("dataset", lambda: check_dataset(config)),
        guarded("model", lambda: check_model(config)),
        backend_check,
        guarded("gpu", lambda: check_gpu(config, backend)),
        guarded("wandb", lambda: check_wandb(config, environ)),
        guarded("git", lambda: check_git(config_path)),
    ]
    return checks, backend


def check_or_raise(config: TrainingConfig, config_path: str | None = None) -> str:
    """Run every check, log a table, raise UserError with each failure; return the backend."""
    checks, backend = run_checks(config, config_path)
    width = max(len(c.name) for c in checks)
    for check in checks:
        log.info("preflight  %-*s  %-4s  %s", width, check.name, check.verdict, check.detail)
    failures = [c.detail for c in checks if not c.ok]
    if failures:
        raise UserError(*failures)
    return backend
