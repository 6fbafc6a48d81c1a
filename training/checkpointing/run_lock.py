"""One trainer per output directory: an OS file lock, released by the kernel when its holder
dies, so a killed run never blocks the next one. (Locks on network filesystems are only as good
as the filesystem's flock; two pods must not share one output_dir.)"""

from __future__ import annotations

import json
import os
import socket

from filelock import FileLock, Timeout

from training.timestamps import utc_now

LOCK_FILE = ".lock"
OWNER_FILE = ".lock.owner"


class OutputDirLocked(Exception):
    pass


class RunLock:
    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self._lock = FileLock(os.path.join(output_dir, LOCK_FILE), timeout=0)

    def acquire(self) -> RunLock:
        os.makedirs(self.output_dir, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise OutputDirLocked(self._describe_owner()) from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "since": utc_now()}
        with open(os.path.join(self.output_dir, OWNER_FILE), "w", encoding="utf-8") as out:
            json.dump(owner, out)
        return self

    def release(self) -> None:
        if self._lock.is_locked:
            try:
                os.unlink(os.path.join(self.output_dir, OWNER_FILE))
            except OSError:
                pass
            self._lock.release()

    def _describe_owner(self) -> str:
        try:
            with open(os.path.join(self.output_dir, OWNER_FILE), encoding="utf-8") as source:
                owner = json.load(source)
            who = f"pid {owner['pid']} on {owner['host']} since {owner['since']}"
        except (OSError, ValueError, KeyError):
            who = "another process"
        return (f"output_dir={self.output_dir!r} is in use by {who}; wait for that run to end, stop it, "
                "or choose another output_dir")
