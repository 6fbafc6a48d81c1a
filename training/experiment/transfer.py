"""Copies between this machine and a network volume (a training.experiment.volume store), no pod needed.

- `pull_from_volume`: a run's final/ or one of its checkpoints (best, latest or a step) into a local
  directory, verified: a checkpoint's files against its COMPLETE manifest (every file, its size)
  before anything is downloaded, every file's MD5 against the volume's ETag as it arrives, and the
  result as a resume would verify it (checkpoints.verify). The directory appears whole or not at all.
- `push_dataset`: a local dataset folder (a layout `dataset_name` reads) to data/NAME on the volume,
  which a pod reads as $VOLUME_PATH/data/NAME. Resumable: a file already there with the same size
  and MD5 is skipped, so running it again after an interruption sends only what is missing; the
  metadata files go last, so a pod never sees a listing of images not yet there.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from training.errors import UserError
from training.experiment.volume import file_etag
from training.run_files import Entry, Store

DATA_DIR = "data"  # datasets on the volume: data/NAME
COPIERS = 8  # files in flight at once
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Copied:
    files: int
    bytes: int
    seconds: float

    def rate(self) -> str:
        megabytes = self.bytes / 1e6
        return f"{self.files} files, {megabytes:.1f} MB in {self.seconds:.1f} s ({megabytes / max(self.seconds, 1e-6):.1f} MB/s)"


# --- pull ------------------------------------------------------------------------------------------
def choose_checkpoint(run: Store, which: str) -> str:
    """The directory name of the checkpoint `which` (best, latest or a step) of the run in `run`."""
    from training.checkpointing.checkpoints import MARKER_FILE, checkpoint_name, step_of
    from training.checkpointing.eval_loss import usable
    from training.checkpointing.state import HARNESS_STATE_FILE

    steps = sorted((s for s in map(step_of, run.children()) if s is not None), reverse=True)
    if not steps:
        raise UserError(f"{run.label}: no checkpoints (checkpoint-<step>/) there")
    if which.isdigit():
        if int(which) not in steps:
            raise UserError(f"--checkpoint {which}: no checkpoint-{which} in {run.label} (there: "
                            f"{', '.join(map(str, sorted(steps)))})")
        return checkpoint_name(int(which))
    if which == "latest":
        for step in steps:  # the newest one whose save completed
            if run.json(f"{checkpoint_name(step)}/{MARKER_FILE}") is not None:
                return checkpoint_name(step)
        raise UserError(f"{run.label}: no complete checkpoint (none has its {MARKER_FILE} manifest)")
    if which == "best":
        losses = {}
        for step in steps:
            state = run.json(f"{checkpoint_name(step)}/{HARNESS_STATE_FILE}") or {}
            loss = usable(state.get("eval_loss")) if isinstance(state, dict) else None
            if loss is not None:
                losses[step] = loss
        if not losses:
            raise UserError(f"{run.label}: no checkpoint was saved at an evaluation (no eval_loss): "
                            "--checkpoint latest or a step")
        return checkpoint_name(min(losses, key=lambda s: (losses[s], -s)))
    raise UserError(f"--checkpoint {which}: best, latest or a step number")


def pull_from_volume(run: Store, source: str, target: str, force: bool, out=None) -> Copied:
    """`source` (final or checkpoint-N) of the run in `run` into `target`, verified; see the module."""
    from training.checkpointing.checkpoints import MARKER_FILE, STAGING_DIR, step_of, verify
    from training.checkpointing.save import fsync_tree, move_into_place

    if os.path.exists(target) and not force:
        raise UserError(f"--into {target}: already exists; pass --force to replace it, or another --into")
    entries = {e.path: e for e in run.sub(source).entries()}
    if not entries:
        raise UserError(f"{run.label}: no {source}/ there (a finished run has final/; --checkpoint picks a checkpoint)")
    checkpoint = step_of(source) is not None
    if checkpoint:
        wanted = _manifest_files(run, source, entries) + [entries[MARKER_FILE]]
    else:
        if "adapter_config.json" not in entries:
            raise UserError(f"{run.label}: {source}/ holds no adapter_config.json: not a saved adapter")
        wanted = list(entries.values())
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".pull-{os.path.basename(target)}-", dir=parent)
    began = time.monotonic()
    try:
        _copy_down(run.sub(source), wanted, staging)
        problem = verify(staging) if checkpoint else None
        if problem:
            raise UserError(f"{run.label}: {source} is not a usable checkpoint once copied ({problem}); nothing "
                            "was written")
        fsync_tree(staging)
        move_into_place(staging, target, os.path.join(parent, STAGING_DIR))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(os.path.join(parent, STAGING_DIR))
    copied = Copied(len(wanted), sum(e.size for e in wanted), time.monotonic() - began)
    check = "its manifest and MD5s" if checkpoint else "the volume's MD5s"
    print(f"pulled {source} of {run.name} from {run.label} into {target}: {copied.rate()}, verified against {check}",
          file=out or sys.stdout)
    return copied


def _manifest_files(run: Store, source: str, entries: dict[str, Entry]) -> list[Entry]:
    """The files a checkpoint's manifest lists, as the volume has them; refused before any download
    when the manifest is missing or a file is missing or of another size than it says."""
    from training.checkpointing.checkpoints import MARKER_FILE

    manifest = run.json(f"{source}/{MARKER_FILE}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise UserError(f"{run.label}: {source} is incomplete: no readable {MARKER_FILE} manifest (its save was "
                        "interrupted); pull another checkpoint")
    wanted = []
    for name, size in sorted(manifest["files"].items()):
        entry = entries.get(name)
        if entry is None:
            raise UserError(f"{run.label}: {source} is damaged: its manifest lists {name}, which is not on the volume; "
                            "pull another checkpoint")
        if entry.size != size:
            raise UserError(f"{run.label}: {source} is damaged: {name} is {entry.size} bytes on the volume, its "
                            f"manifest says {size}; pull another checkpoint")
        wanted.append(entry)
    return wanted


def _copy_down(source: Store, entries: list[Entry], into: str) -> None:
    def one(entry: Entry) -> None:
        local = os.path.join(into, *entry.path.split("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        digest = hashlib.md5(usedforsecurity=False)
        source.download(entry.path, local, digest)
        size = os.path.getsize(local)
        if size != entry.size:
            raise UserError(f"{source.label}: {entry.path} arrived with {size} of {entry.size} bytes; nothing was "
                            "written: try again")
        if entry.etag and _MD5.match(entry.etag) and digest.hexdigest() != entry.etag:
            raise UserError(f"{source.label}: {entry.path} arrived corrupted (its MD5 is not the volume's ETag); "
                            "nothing was written: try again")

    _each(one, entries)


# --- push ------------------------------------------------------------------------------------------
def push_dataset(directory: str, volume: Store, name: str, progress: bool | None = None, out=None) -> Copied:
    """The dataset folder `directory` to data/`name` on the volume; see the module. `progress`: a bar
    on stderr (None: when stderr is a terminal)."""
    from configs.base import TrainingConfig
    from training.experiment.launch import VOLUME_MOUNT
    from training.preflight import local_dataset_problem

    if not os.path.isdir(directory):
        raise UserError(f"data push {directory}: no such directory")
    defaults = TrainingConfig()
    problem = local_dataset_problem(_path(directory), defaults.image_column, defaults.text_column,
                                    defaults.max_bad_sample_fraction)
    if problem:
        raise UserError(f"data push {directory}: {problem}")
    remote = volume.sub(f"{DATA_DIR}/{name}")
    there = {e.path: e for e in remote.entries()}
    local = [(entry, os.path.join(directory, *entry.path.split("/"))) for entry in _local_files(directory)]
    todo = [(entry, path) for entry, path in local if not _same(there.get(entry.path), entry, path)]
    # Images first, metadata last: whatever a pod reads lists only images that are there.
    todo.sort(key=lambda item: (os.path.basename(item[0].path) in METADATA_NAMES, item[0].path))
    total = sum(entry.size for entry, _ in todo)
    bar = _bar(total, progress)
    done: list[Entry] = []
    began = time.monotonic()

    def one(item) -> None:
        entry, path = item
        remote.upload(path, entry.path)
        done.append(entry)
        bar.update(entry.size)

    try:
        images = [item for item in todo if os.path.basename(item[0].path) not in METADATA_NAMES]
        _each(one, images)
        _each(one, todo[len(images):])
    except UserError as error:
        raise UserError(f"{error.problems[0]}; {len(done)} of {len(todo)} files went up before it: run the same "
                        "command again, it skips the files already there") from None
    finally:
        bar.close()
    copied = Copied(len(done), sum(e.size for e in done), time.monotonic() - began)
    skipped = len(local) - len(todo)
    out = out or sys.stdout
    print(f"pushed {directory} to {remote.label}: {copied.rate()}; {skipped} already there (same size and MD5) "
          f"skipped", file=out)
    print(f'on a pod that mounts it: dataset_name="{VOLUME_MOUNT}/{DATA_DIR}/{name}" (the volume\'s mount, VOLUME_PATH)',
          file=out)
    return copied


def _local_files(directory: str) -> list[Entry]:
    from training.run_files import LocalDir

    return [e for e in LocalDir(directory).entries() if not os.path.basename(e.path).startswith(".")]


def _same(remote: Entry | None, local: Entry, path: str) -> bool:
    """The volume already has this file: same size and, where it says one, the same ETag."""
    return remote is not None and remote.size == local.size and (remote.etag is None or remote.etag == file_etag(path))


def _each(action, items: list) -> None:
    """`action` on every item, COPIERS at a time; the first error stops the rest and is raised."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=COPIERS) as pool:
        futures = [pool.submit(action, item) for item in items]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _bar(total: int, shown: bool | None):
    from tqdm import tqdm  # huggingface_hub's own progress bars: installed with it

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=None if shown is None else not shown,
                file=sys.stderr, desc="push", leave=False)


def _path(directory: str):
    from pathlib import Path

    return Path(directory)


def _remove_empty(directory: str) -> None:
    try:
        os.rmdir(directory)
    except OSError:
        pass
