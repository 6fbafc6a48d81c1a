"""A batch's samples read side by side (training.data.batch_reading): the same samples, in the same
order, as one at a time, through every split type and torch's DataLoader; errors as before."""

from __future__ import annotations

import os
import threading

import pytest
import torch
from test_sources import config_for, write_imagefolder

from training.data import synthetic
from training.data.batch_reading import read_batch
from training.data.sources import SYNTHETIC_SEED, Screened, Subset, SyntheticSplit, load_splits


def pixels(samples: list[dict]) -> list[tuple[str, str, bytes]]:
    return [(s["key"], s["text"], s["image"].tobytes()) for s in samples]


def test_rendered_batch_is_what_one_at_a_time_renders():
    # A split name no other test reads: its headers are rendered here, in threads, not served from
    # what an earlier test rendered; the reference is drawn one at a time by the synthetic module.
    split = SyntheticSplit("batch-reading", 24)
    one_by_one = [(f"batch-reading/{i}", record.transcription(),
                   synthetic.render_header(record, SYNTHETIC_SEED, "batch-reading", i).tobytes())
                  for i, record in ((i, synthetic.sample_record(SYNTHETIC_SEED, "batch-reading", i)) for i in range(24))]
    assert pixels(split.__getitems__([5, 0, 23, *range(1, 12)])) == [one_by_one[i] for i in [5, 0, 23, *range(1, 12)]]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: samples are read one at a time")
def test_reads_run_side_by_side_in_the_given_order():
    seen_threads, release = set(), threading.Barrier(2, timeout=10)

    def read(index: int) -> dict:
        seen_threads.add(threading.current_thread().name)
        if index < 2:
            release.wait()  # the first two reads meet: they run at the same time, or this times out
        return {"index": index}

    assert [s["index"] for s in read_batch(read, [0, 1, 2, 3])] == [0, 1, 2, 3]
    assert len(seen_threads) >= 2


def test_the_first_failing_read_raises_as_it_would_alone():
    def read(index: int) -> dict:
        if index in (2, 3):
            raise IndexError(index)
        return {"index": index}

    with pytest.raises(IndexError, match="2"):
        read_batch(read, range(5))
    with pytest.raises(IndexError):
        Subset(SyntheticSplit("train", 10), 4).__getitems__([1, 4])


def test_table_screened_and_subset_splits_read_batches(tmp_path):
    rows = write_imagefolder(tmp_path, "train", 6)
    write_imagefolder(tmp_path, "validation", 2)
    train = load_splits(config_for(tmp_path, train_subset=5)).train
    assert isinstance(train, Subset)
    screened = Screened(train, [4, 0, 2])
    for split, indices in ((train, [3, 1, 0, 4]), (screened, [2, 0, 1])):
        assert pixels(split.__getitems__(indices)) == pixels([split[i] for i in indices])
    assert {s["text"] for s in train.__getitems__(range(5))} <= {r["text"] for r in rows}


@pytest.mark.parametrize("workers", [0, 1])
def test_dataloader_batches_are_unchanged(workers):
    """torch's DataLoader reads a batch through __getitems__ (in a worker, one sample at a time)."""
    class Counted(SyntheticSplit):
        batches = 0

        def __getitems__(self, indices):
            Counted.batches += 1
            return super().__getitems__(indices)

    split = Counted("train", 12)
    expected = [[split[i]["key"] for i in range(start, start + 4)] for start in range(0, 12, 4)]
    loader = torch.utils.data.DataLoader(split, batch_size=4, num_workers=workers,
                                         collate_fn=lambda batch: [s["key"] for s in batch])
    assert list(loader) == expected
    assert Counted.batches == (3 if workers == 0 else 0)  # a worker's count stays in the worker
