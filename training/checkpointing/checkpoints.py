"""Checkpoints on disk: how they are laid out, published atomically, verified, listed and deleted.

    output_dir/
      checkpoint-<step>/            one resumable checkpoint, visible only once complete
        adapter_model.safetensors   the LoRA adapter (and modules_to_save); never the frozen base
        adapter_config.json
        optimizer.pt scheduler.pt   Hugging Face Trainer's own files, as it writes them
        rng_state*.pth              (one per rank), trainer_state.json, training_args.bin
        harness_state.json          this harness's loop state (training.checkpointing.state.HarnessState)
        COMPLETE                    written last: the manifest of every file, its size and sha256
      .staging/checkpoint-<step>/   a checkpoint being written; removed on start, unless it is complete
                                    and its target is missing (then promoted: see clear_staging)
      abandoned/<label>/            what `--resume PATH` to an older checkpoint left behind: the old
                                    line's newer checkpoints and final/, kept, never read

A checkpoint is written under .staging/, flushed, given its manifest, flushed again and renamed
into place, so a crash at any moment leaves either the whole checkpoint or none of it. Every scan
checks the manifest's sizes, which catches files truncated or removed afterwards; the resume point
is also checked against the content hashes (a torn write that kept the size, a bad disk), and a
damaged checkpoint gives way to the newest good one (training.checkpointing.resume).

A save that must fit the SIGTERM grace publishes the checkpoint without optimizer.pt, the largest
file, and then adds it (add_file): a kill in between leaves a complete checkpoint that resumes with
an earlier checkpoint's optimizer moments (HarnessTrainer), close to but not exactly the same run.
That save publishes sizes only and hashes the files in its second half, so hashing costs the
grace nothing; a checkpoint killed in between resumes unhashed (its content cannot be checked).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass

from training.checkpointing.eval_loss import usable
from training.checkpointing.save import discard, fsync_dir, fsync_tree, move_into_place
from training.checkpointing.state import HARNESS_STATE_FILE, HarnessState

PREFIX = "checkpoint-"
MARKER_FILE = "COMPLETE"
OPTIMIZER_FILE = "optimizer.pt"  # the Trainer's name for it
SCHEDULER_FILE = "scheduler.pt"
STAGING_DIR = ".staging"
ABANDONED_DIR = "abandoned"  # checkpoints of a line a fork left, kept aside
TRAINER_STATE_FILE = "trainer_state.json"
# 1: sizes; 2: sizes and the sha256 of the files hashed so far (a format-1 manifest is still read).
MANIFEST_FORMAT = 2
_NAME = re.compile(rf"^{PREFIX}(\d+)$")


@dataclass(frozen=True)
class CheckpointInfo:
    """What retention and resume need to know about one complete checkpoint."""

    step: int
    path: str
    eval_loss: float | None


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step}"


def staging_path(output_dir: str, step: int) -> str:
    return os.path.join(output_dir, STAGING_DIR, checkpoint_name(step))


def step_of(path: str) -> int | None:
    match = _NAME.match(os.path.basename(os.path.normpath(path)))
    return int(match.group(1)) if match else None


def file_sha256(path: str) -> str:
    with open(path, "rb") as source:
        return hashlib.file_digest(source, "sha256").hexdigest()


def read_manifest(directory: str) -> dict:
    """The manifest of `directory` (OSError, ValueError when it cannot be read)."""
    with open(os.path.join(directory, MARKER_FILE), encoding="utf-8") as source:
        manifest = json.load(source)
    if not isinstance(manifest, dict):
        raise ValueError("not a JSON object")
    return manifest


def write_manifest(directory: str, step: int, digest: bool = True, known: dict[str, str] | None = None) -> None:
    """The manifest of every file in `directory` with its size and (`digest`) its sha256, `known`
    digests reused; written to a temporary file and renamed into place, so rewriting it (add_file)
    never leaves a torn one."""
    files, digests = {}, {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            full = os.path.join(root, name)
            relative = os.path.relpath(full, directory)
            if relative in (MARKER_FILE, MARKER_FILE + ".tmp"):
                continue
            files[relative] = os.path.getsize(full)
            if (known or {}).get(relative):
                digests[relative] = known[relative]
            elif digest:
                digests[relative] = file_sha256(full)
    temporary = os.path.join(directory, MARKER_FILE + ".tmp")
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump({"format": MANIFEST_FORMAT, "step": step, "files": files, "sha256": digests}, out, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, os.path.join(directory, MARKER_FILE))


# For the kill tests, and only them: HARNESS_PAUSE_AT=<point>:<marker file> makes the first save
# that reaches <point> create the marker and wait there, so a test can SIGKILL it at exactly that
# moment instead of polling for it. Points: "manifest" (files written, no manifest yet) and
# "rename" (complete under .staging/, not yet in place).
PAUSE_ENV = "HARNESS_PAUSE_AT"
PAUSE_SECONDS = 120  # then the save goes on: a forgotten variable costs time, never a checkpoint


def pause_point(point: str) -> None:
    wanted, _, marker = os.environ.get(PAUSE_ENV, "").partition(":")
    if wanted != point or not marker or os.path.exists(marker):
        return
    with open(marker, "w", encoding="utf-8") as out:
        out.write(str(os.getpid()))
    time.sleep(PAUSE_SECONDS)


def publish(staging: str, output_dir: str, step: int, digest: bool = True) -> str:
    """Make the fully written `staging` checkpoint visible as output_dir/checkpoint-<step>; without
    `digest` (a save racing the SIGTERM grace) the manifest gets sizes only, and add_file hashes."""
    fsync_tree(staging)
    pause_point("manifest")
    write_manifest(staging, step, digest)
    fsync_dir(staging)
    pause_point("rename")
    target = os.path.join(output_dir, checkpoint_name(step))
    # Saved again at the same step (e.g. after a resume): the old one is replaced.
    move_into_place(staging, target, os.path.join(output_dir, STAGING_DIR))
    return target


def add_file(checkpoint: str, name: str, write) -> None:
    """Add the file `name` to the published `checkpoint`: `write(path)` writes it under .staging/,
    then it is flushed, renamed in and listed in a rewritten manifest, which hashes every file not
    hashed yet. A crash at any moment leaves the checkpoint complete, with or without the file,
    never with a part of it."""
    staging = os.path.join(os.path.dirname(os.path.normpath(checkpoint)), STAGING_DIR)
    os.makedirs(staging, exist_ok=True)
    temporary = os.path.join(staging, f"{os.path.basename(os.path.normpath(checkpoint))}-{name}")
    write(temporary)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    try:
        known = read_manifest(checkpoint).get("sha256") or {}
    except (OSError, ValueError):
        known = {}
    known.pop(name, None)
    os.rename(temporary, os.path.join(checkpoint, name))
    write_manifest(checkpoint, step_of(checkpoint), known=known)
    fsync_dir(checkpoint)


def verify(path: str, content: bool = False) -> str | None:
    """None if `path` is a complete, readable checkpoint; otherwise why not, in a few words. With
    `content`, each file's sha256 is checked against the manifest too (reading every byte: for the
    checkpoint a resume is about to load, not for every scan)."""
    if not os.path.isdir(path):
        return "not a directory"
    try:
        manifest = read_manifest(path)
    except FileNotFoundError:
        return f"incomplete: no {MARKER_FILE} marker (the save was interrupted)"
    except (OSError, ValueError) as error:
        return f"unreadable {MARKER_FILE} marker ({error})"
    for name, size in manifest.get("files", {}).items():
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            return f"missing file {name}"
        if os.path.getsize(full) != size:
            return f"truncated file {name} ({os.path.getsize(full)} of {size} bytes)"
    for name in (TRAINER_STATE_FILE, HARNESS_STATE_FILE):
        try:
            with open(os.path.join(path, name), encoding="utf-8") as source:
                json.load(source)
        except (OSError, ValueError) as error:
            return f"unreadable {name} ({type(error).__name__})"
    if content:
        for name, digest in sorted((manifest.get("sha256") or {}).items()):
            if file_sha256(os.path.join(path, name)) != digest:
                return f"damaged file {name} (same size, other content than its manifest's sha256: a torn or corrupted write)"
    return None


def scan(output_dir: str) -> tuple[list[CheckpointInfo], list[tuple[str, str]]]:
    """Complete checkpoints sorted by step, and (path, reason) for every one that is not."""
    complete, rejected = [], []
    if not os.path.isdir(output_dir):
        return complete, rejected
    for name in os.listdir(output_dir):
        step = step_of(name)
        if step is None:
            continue
        path = os.path.join(output_dir, name)
        problem = verify(path)
        if problem:
            rejected.append((path, problem))
            continue
        state = HarnessState.load(path)
        complete.append(CheckpointInfo(step, path, usable(state.eval_loss)))
    complete.sort(key=lambda c: c.step)
    rejected.sort(key=lambda item: step_of(item[0]) or 0)
    return complete, rejected


def delete(path: str) -> None:
    """Remove a checkpoint so that no crash midway leaves something that looks like one."""
    discard(path, os.path.join(os.path.dirname(os.path.normpath(path)), STAGING_DIR))


def clear_staging(output_dir: str) -> tuple[list[str], list[str]]:
    """Remove what interrupted saves and deletes left behind: (promoted, removed) names.

    A re-save of an existing step discards the old copy before renaming the new one into place; a
    crash between the two leaves only the staged copy, complete and verified. That one is promoted
    into place instead of removed, so no crash loses both."""
    staging = os.path.join(output_dir, STAGING_DIR)
    if not os.path.isdir(staging):
        return [], []
    promoted = []
    for name in sorted(os.listdir(staging)):
        staged, target = os.path.join(staging, name), os.path.join(output_dir, name)
        if step_of(name) is not None and not os.path.exists(target) and verify(staged) is None:
            os.rename(staged, target)
            fsync_dir(output_dir)
            promoted.append(name)
    leftovers = sorted(os.listdir(staging))
    shutil.rmtree(staging, ignore_errors=True)
    return promoted, leftovers


def set_aside(output_dir: str, names: list[str], label: str) -> str:
    """Move `names` (checkpoints, final/) of output_dir into output_dir/abandoned/<label>/, where
    neither resume nor retention looks; returns that directory."""
    aside = os.path.join(output_dir, ABANDONED_DIR, label)
    os.makedirs(aside, exist_ok=True)
    for name in names:
        os.rename(os.path.join(output_dir, name), os.path.join(aside, name))
    fsync_dir(aside)
    fsync_dir(output_dir)
    return aside


def optimizer_donor(output_dir: str, step: int) -> str | None:
    """The newest complete checkpoint before `step` that holds the optimizer state, its content
    checked, if any."""
    complete, _ = scan(output_dir)
    holders = [c.path for c in complete if c.step < step and os.path.isfile(os.path.join(c.path, OPTIMIZER_FILE))]
    return next((path for path in reversed(holders) if verify(path, content=True) is None), None)
