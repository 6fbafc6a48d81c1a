"""The eval set prepared once: the same batches as reading afresh, no reads once prepared, the
memory bound kept (and said), and DataLoader workers reading what the main process prepared."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import AutoProcessor

from training.data.collator import VisionChatCollator, model_input
from training.data.prepared import PreparedSplit
from training.data.sources import SyntheticSplit
from training.model.standin import standin_path


class Counted(SyntheticSplit):
    """The synthetic validation split, counting the samples read from it."""

    def __init__(self, size: int):
        super().__init__("validation", size)
        self.reads = 0

    def __getitem__(self, index: int) -> dict:
        self.reads += 1
        return super().__getitem__(index)


@pytest.fixture(scope="module")
def collator():
    return VisionChatCollator(AutoProcessor.from_pretrained(standin_path()), "Transcribe this well log header exactly.")


def assert_same_batch(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert first[key].dtype == second[key].dtype and torch.equal(first[key], second[key]), key


def test_prepared_samples_give_the_batches_read_afresh_give_without_reading_again(collator):
    base = Counted(6)
    prepared = PreparedSplit(base, collator, budget_bytes=64 * 1024**2)
    prepared.prepare([4, 0, 1, 2, 3, 5, 0])
    assert sorted(prepared.held) == list(range(6)) and base.reads == 6
    for indices in ([0, 1, 2], [5, 3], [4]):
        batch = prepared.__getitems__(indices)
        assert all("encoded" in sample and "image" not in sample for sample in batch)
        fresh = [SyntheticSplit("validation", 6)[i] for i in indices]
        assert [s["key"] for s in batch] == [s["key"] for s in fresh]
        assert_same_batch(collator(batch), collator(fresh))
        assert_same_batch(collator.generation_inputs([model_input(s) for s in batch]),
                          collator.generation_inputs([s["image"] for s in fresh]))
    assert base.reads == 6, "prepared samples are not read again"
    assert prepared.image(2).tobytes() == SyntheticSplit("validation", 6)[2]["image"].tobytes()


def test_samples_past_the_memory_bound_are_read_at_every_use_and_the_log_says_so(collator, caplog):
    one = collator.encode([SyntheticSplit("validation", 1)[0]["image"]], ["x"])[0].nbytes()
    base = Counted(5)
    prepared = PreparedSplit(base, collator, budget_bytes=int(2.5 * one))
    with caplog.at_level(logging.INFO, logger="training"):
        prepared.prepare(range(5))
    assert sorted(prepared.held) == [0, 1]
    warning, = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "only 2 of its samples fit eval_cache_mb=" in warning
    assert "the other 3 are read and preprocessed again at every evaluation" in warning
    base.reads = 0
    batch = prepared.__getitems__(range(5))
    assert base.reads == 3 and ["encoded" in s for s in batch] == [True, True, False, False, False]
    assert_same_batch(collator(batch), collator([SyntheticSplit("validation", 5)[i] for i in range(5)]))


def test_no_budget_prepares_nothing(collator, caplog):
    base = Counted(3)
    prepared = PreparedSplit(base, collator, budget_bytes=0)
    with caplog.at_level(logging.INFO, logger="training"):
        prepared.prepare(range(3))
    assert not prepared.held and base.reads == 0
    assert "eval_cache_mb=0, so its samples are read and preprocessed at every evaluation" in caplog.text


def test_a_stop_request_ends_preparing_between_batches(collator):
    base = Counted(40)
    prepared = PreparedSplit(base, collator, budget_bytes=1024**3)
    prepared.prepare(range(40), should_stop=lambda: base.reads > 0)
    assert len(prepared.held) == base.reads == 32  # one batch of PREPARED_AT_ONCE, then the stop


def test_dataloader_workers_read_what_the_main_process_prepared(collator):
    """On a GPU machine the eval DataLoader reads in worker processes, started at each evaluation."""
    prepared = PreparedSplit(Counted(6), collator, budget_bytes=64 * 1024**2)
    prepared.prepare(range(6))
    fresh = torch.utils.data.DataLoader(SyntheticSplit("validation", 6), batch_size=4, collate_fn=collator)
    in_worker = torch.utils.data.DataLoader(prepared, batch_size=4, num_workers=1, collate_fn=collator)
    for expected, got in zip(fresh, in_worker, strict=True):
        assert_same_batch(expected, got)
