"""Writing directories so that they appear whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile

FINAL_DIR = "final"


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


def publish_dir(staging: str, target: str) -> None:
    """Make the fully written `staging` directory visible as `target`, replacing an old one."""
    fsync_tree(staging)
    parent = os.path.dirname(target)
    if os.path.exists(target):
        retired = tempfile.mkdtemp(prefix=f".old-{os.path.basename(target)}-", dir=parent)
        os.rename(target, os.path.join(retired, "old"))
        os.rename(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staging, target)
    fsync_dir(parent)


def save_final(model, processor, config, output_dir: str) -> str:
    """The trained adapter, processor and config in output_dir/final, for evaluation or publishing."""
    from training.inference import write_config

    target = os.path.join(output_dir, FINAL_DIR)
    staging = tempfile.mkdtemp(prefix=f".{FINAL_DIR}-", dir=output_dir)
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        write_config(config, staging)
        publish_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
