"""A batch's samples read side by side. Decoding and rendering images is Pillow's C code, which
releases the GIL, so a few threads cut the read time of a batch where nothing else reads in
parallel: on CPU, where the DataLoader reads in the training process (dataloader_workers=0), and
for the transcriptions of an evaluation. Inside a DataLoader worker the workers already are the
parallelism: samples are read one after the other there."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

MAX_THREADS = 4

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(MAX_THREADS, os.cpu_count() or 1),
                                       thread_name_prefix="read-samples")
        return _pool


def read_batch(read: Callable[[int], dict], indices: Sequence[int]) -> list[dict]:
    """[read(i) for i in indices], in that order, the first error raised as it would be."""
    from torch.utils.data import get_worker_info

    indices = list(indices)
    if len(indices) < 2 or get_worker_info() is not None or (os.cpu_count() or 1) < 2:
        return [read(i) for i in indices]
    return list(_threads().map(read, indices))


class BatchReads:
    """Gives a map-style split `__getitems__`, which torch's DataLoader calls for a whole batch."""

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        return read_batch(self.__getitem__, indices)
