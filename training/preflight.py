"""Checks that run before anything costly: each names what failed and what to do about it."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass

from configs.base import TrainingConfig
from training.data.sources import dataset_kind
from training.errors import UserError

log = logging.getLogger("training")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


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


def check_output_dir(config: TrainingConfig) -> Check:
    target = config.output_dir
    existing = nearest_existing(target)
    if existing == os.path.abspath(target) and not os.path.isdir(target):
        return Check("output dir", False, f"output_dir={target!r}: exists and is not a directory; "
                                          "choose another output_dir")
    if not os.path.isdir(existing) or not can_write_in(existing):
        return Check("output dir", False, f"output_dir={target!r}: {existing} is not writable; "
                                          "choose a writable output_dir or fix its permissions")
    return Check("output dir", True, target)


def check_dataset(config: TrainingConfig) -> Check:
    kind = dataset_kind(config.dataset_name)
    if kind == "local" and not os.path.exists(os.path.expanduser(config.dataset_name)):
        return Check("dataset", False, f"dataset_name={config.dataset_name!r}: no such file or directory; "
                                       "give an existing folder or parquet file")
    return Check("dataset", True, f"{kind}: {config.dataset_name}")


def check_backend(config: TrainingConfig) -> tuple[Check, str | None]:
    from training.modeling import cuda_available, select_backend, unsloth_installed

    try:
        backend = select_backend(config, cuda_available(), unsloth_installed())
    except UserError as error:
        return Check("backend", False, error.problems[0]), None
    return Check("backend", True, backend), backend


def run_checks(config: TrainingConfig) -> tuple[list[Check], str | None]:
    backend_check, backend = check_backend(config)
    return [check_output_dir(config), check_dataset(config), backend_check], backend


def check_or_raise(config: TrainingConfig) -> str:
    """Run every check, log a table, raise UserError with each failure; return the backend."""
    checks, backend = run_checks(config)
    width = max(len(c.name) for c in checks)
    for check in checks:
        log.info("preflight  %-*s  %s  %s", width, check.name, "ok  " if check.ok else "FAIL", check.detail)
    failures = [c.detail for c in checks if not c.ok]
    if failures:
        raise UserError(*failures)
    return backend
