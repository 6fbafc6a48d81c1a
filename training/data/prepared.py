"""The eval set prepared once: the same samples are evaluated at every evaluation of a run, so each
one's pixel values and token ids (the collator's Encoded) are made at the first evaluation and
kept, within a memory bound, instead of being read and preprocessed again every time.

A prepared sample is {"key", "text", "encoded"}; the collator pads it as it is. Samples past the
bound stay as they were, read and preprocessed whenever they are read. Each process (torchrun rank)
prepares the samples it reads itself. A DataLoader worker reads prepared samples from the copy of
this split it was started with, so preparing happens in the process that owns the split, before
the workers start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from training.data.batch_reading import BatchReads, read_batch

log = logging.getLogger("training")

MB = 1024**2
PREPARED_AT_ONCE = 32  # samples read and preprocessed together: one processor call, a few read threads


class PreparedSplit(BatchReads):
    """A split whose samples, once `prepare`d, come back Encoded, within `budget_bytes` in all."""

    def __init__(self, base, collator, budget_bytes: int):
        self.base, self.collator, self.budget_bytes = base, collator, budget_bytes
        self.held: dict[int, dict] = {}
        self.held_bytes = 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        return self.held.get(index) or self.base[index]

    def __getitems__(self, indices) -> list[dict]:
        indices = list(indices)
        missing = [i for i in indices if i not in self.held]
        read = dict(zip(missing, read_batch(self.base.__getitem__, missing)))
        return [self.held[i] if i in self.held else read[i] for i in indices]

    def image(self, index: int):
        """The sample's image, read afresh: a prepared sample keeps only what the model reads."""
        return self.base[index]["image"]

    def prepare(self, indices: Iterable[int], should_stop: Callable[[], object] | None = None) -> None:
        """Read and preprocess `indices` (first come first kept) and keep them while the kept bytes
        stay within the budget; a stop request ends it between batches (the rest stay unprepared)."""
        wanted = [i for i in dict.fromkeys(indices) if i not in self.held]
        if not wanted:
            return
        if self.budget_bytes <= 0:
            log.info("eval set: eval_cache_mb=0, so its samples are read and preprocessed at every evaluation")
            return
        began, kept = time.monotonic(), 0
        for start in range(0, len(wanted), PREPARED_AT_ONCE):
            if should_stop is not None and should_stop():
                return
            chunk = wanted[start:start + PREPARED_AT_ONCE]
            samples = read_batch(self.base.__getitem__, chunk)
            encoded = self.collator.encode([s["image"] for s in samples], [s["text"] for s in samples])
            for index, sample, prepared in zip(chunk, samples, encoded):
                size = prepared.nbytes()
                if self.held_bytes + size > self.budget_bytes:
                    self._over_budget(kept, len(wanted) - kept, size)
                    return
                self.held[index] = {"key": sample["key"], "text": sample["text"], "encoded": prepared}
                self.held_bytes += size
                kept += 1
        log.info("eval set: %d samples read and preprocessed once (%.0f MB, %.1f s), reused at every evaluation",
                 kept, self.held_bytes / MB, time.monotonic() - began)

    def _over_budget(self, kept: int, left: int, next_bytes: int) -> None:
        per_sample = (self.held_bytes + next_bytes) / (len(self.held) + 1)
        log.warning("eval set: only %d of its samples fit eval_cache_mb=%d (%.0f MB held); the other %d are read and "
                    "preprocessed again at every evaluation. About %.0f MB would hold them all: raise eval_cache_mb "
                    "if this machine's memory allows", kept, self.budget_bytes // MB, self.held_bytes / MB, left,
                    per_sample * (len(self.held) + left) / MB)
