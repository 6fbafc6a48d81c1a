"""A run's files behind one small interface: `Store`, with `LocalDir` for a directory here (./outputs,
or the network volume mounted on a pod). training.experiment.volume adds the network volume through
RunPod's S3 API; the runs' readers (status, compare, fleet, the model card) read through a Store.

Paths are relative to the store's root ('/'-separated): `read` (bytes, None when missing), `json`
(None when missing or torn), `children` (subdirectory names), `entries` (every file below a path,
with its size and, on S3, its ETag), `download`, `upload`, and `sub` (the same store rooted lower).
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """A file below a store's path: its path relative to that path, its size, and its MD5 when known
    (an S3 ETag of a single-part upload is the MD5 of the content; a multipart one ends in -N)."""

    path: str
    size: int
    etag: str | None = None


class Store(ABC):
    """The interface both backends answer; paths are relative to the store's root, '/'-separated."""

    label: str  # for messages: where this is

    @property
    @abstractmethod
    def name(self) -> str:
        """The last part of the root (a run's directory name)."""

    @abstractmethod
    def sub(self, path: str) -> Store:
        """The same store rooted at `path`."""

    @abstractmethod
    def read(self, path: str) -> bytes | None:
        """The file's bytes; None when there is no such file."""

    @abstractmethod
    def children(self, path: str = "") -> list[str]:
        """The names of the directories directly under `path`, sorted."""

    @abstractmethod
    def entries(self, path: str = "") -> list[Entry]:
        """Every file below `path` (recursively), sorted by path."""

    @abstractmethod
    def download(self, path: str, local: str, digest=None) -> None:
        """The file to the local path `local`, fed to the hashlib `digest` as it comes."""

    @abstractmethod
    def upload(self, local: str, path: str) -> None:
        """The local file `local` to `path`."""

    def json(self, path: str):
        """The JSON in `path`, or None where it is missing, unreadable or torn (a run may be mid-write)."""
        raw = self.read(path)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def text(self, path: str) -> str | None:
        raw = self.read(path)
        return None if raw is None else raw.decode("utf-8", errors="replace")


class LocalDir(Store):
    def __init__(self, root: str):
        self.root = root
        self.label = root

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.root))

    def sub(self, path: str) -> LocalDir:
        return LocalDir(os.path.join(self.root, *path.split("/")))

    def _full(self, path: str) -> str:
        return os.path.join(self.root, *[p for p in path.split("/") if p])

    def read(self, path: str) -> bytes | None:
        try:
            with open(self._full(path), "rb") as source:
                return source.read()
        except OSError:
            return None

    def children(self, path: str = "") -> list[str]:
        where = self._full(path)
        try:
            return sorted(e for e in os.listdir(where) if os.path.isdir(os.path.join(where, e)))
        except OSError:
            return []

    def entries(self, path: str = "") -> list[Entry]:
        where = self._full(path)
        found = []
        for root, _dirs, names in os.walk(where):
            for name in names:
                full = os.path.join(root, name)
                found.append(Entry(os.path.relpath(full, where).replace(os.sep, "/"), os.path.getsize(full)))
        return sorted(found, key=lambda e: e.path)

    def download(self, path: str, local: str, digest=None) -> None:
        with open(self._full(path), "rb") as source, open(local, "wb") as out:
            for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
                out.write(chunk)
                if digest is not None:
                    digest.update(chunk)

    def upload(self, local: str, path: str) -> None:
        target = self._full(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(local, target)
