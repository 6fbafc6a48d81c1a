"""Writing files and directories so that they appear whole or not at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable

FINAL_DIR = "final"


def write_json_atomic(path: str, payload: dict) -> None:
    """Replace `path` with `payload` so a reader sees the old or the new file, never half of one."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(payload, out, indent=2, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def fsync_tree(path: str) -> None:
    """Flush every file, then every directory, of `path` to disk."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(root)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(path: str, trash_dir: str) -> None:
    """Remove a directory so that a crash midway leaves nothing of it where it was: it is renamed
    into `trash_dir` first (which startup clears), then deleted."""
    os.makedirs(trash_dir, exist_ok=True)
    doomed = tempfile.mkdtemp(prefix=f"deleting-{os.path.basename(os.path.normpath(path))}-", dir=trash_dir)
    os.rename(path, os.path.join(doomed, "old"))
    shutil.rmtree(doomed, ignore_errors=True)


def move_into_place(staging: str, target: str, trash_dir: str) -> None:
    """Rename the fully written and flushed `staging` to `target`, discarding an old `target`."""
    if os.path.exists(target):
        discard(target, trash_dir)
    os.rename(staging, target)
    fsync_dir(os.path.dirname(os.path.abspath(target)))


def save_final(model, processor, output_dir: str, add_files: Callable[[str], None]) -> str:
    """The trained adapter, processor and what `add_files(directory)` writes beside them (the run's
    config, training.run_config) in output_dir/final, for evaluation or publishing."""
    from training.checkpointing.checkpoints import STAGING_DIR

    target = os.path.join(output_dir, FINAL_DIR)
    trash = os.path.join(output_dir, STAGING_DIR)  # a save cut short is cleared at the next start
    os.makedirs(trash, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f"{FINAL_DIR}-", dir=trash)
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        add_files(staging)
        fsync_tree(staging)
        move_into_place(staging, target, trash)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
