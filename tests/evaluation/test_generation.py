"""Batched greedy transcription: the same text as one image at a time, and a batch ends with its
last sequence. On the memorised stand-in, whose transcriptions end where the targets do."""

from __future__ import annotations

import pytest
import torch
from transformers import StoppingCriteria

from training.data.collator import END_OF_TURN, VisionChatCollator
from training.data.sources import SyntheticSplit
from training.evaluation.generation import (
    AUTO_BATCH_CPU,
    generation_batch_size,
    generation_bound,
    longest_reference,
    transcribe,
)
from training.evaluation.scoring import scores
from training.model.inference import load_trained
from training.run_config import saved_config


class CountTokens(StoppingCriteria):
    """Counts the tokens generated, never stops: where a per-token stop check plugs in."""

    def __init__(self):
        self.calls = 0

    def __call__(self, input_ids, scores, **kwargs):
        self.calls += 1
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@pytest.fixture(scope="module")
def model_and_collator(memorised):
    config = saved_config(str(memorised))
    loaded = load_trained(str(memorised), config, "transformers")
    return loaded.model, VisionChatCollator(loaded.processor, config.instruction)


def test_batched_transcription_is_what_one_image_at_a_time_gives(model_and_collator):
    model, collator = model_and_collator
    # memorised headers (exact, ending early) and unseen ones (other lengths, some cut at the limit)
    samples = [SyntheticSplit("train", 8)[i] for i in range(6)] + [SyntheticSplit("validation", 8)[i] for i in range(6)]
    images, targets = [s["image"] for s in samples], [s["text"] for s in samples]
    alone = transcribe(model, collator, images, max_new_tokens=100, batch_size=1)
    batched = transcribe(model, collator, images, max_new_tokens=100, batch_size=generation_batch_size(-1, False))
    assert batched == alone
    assert scores(targets, batched) == scores(targets, alone)
    assert alone[:6] == targets[:6], "the memorised headers should be exact"


def test_a_batch_ends_as_soon_as_every_sequence_has(model_and_collator):
    model, collator = model_and_collator
    samples = [SyntheticSplit("train", 8)[i] for i in range(4)]
    counter = CountTokens()
    predictions = transcribe(model, collator, [s["image"] for s in samples], max_new_tokens=200, batch_size=4,
                             stopping_criteria=[counter])
    assert predictions == [s["text"] for s in samples]
    longest = max(len(collator.tokenizer(s["text"] + END_OF_TURN, add_special_tokens=False)["input_ids"])
                  for s in samples)
    assert counter.calls == longest < 200


@pytest.mark.parametrize("configured, has_cuda, expected", [(-1, False, AUTO_BATCH_CPU), (-1, True, 16), (3, True, 3)])
def test_generation_batch_size(configured, has_cuda, expected):
    assert generation_batch_size(configured, has_cuda) == expected


def test_the_auto_bound_changes_no_transcription_of_a_trained_model(model_and_collator):
    model, collator = model_and_collator
    samples = [SyntheticSplit("train", 8)[i] for i in range(8)]
    images, targets = [s["image"] for s in samples], [s["text"] for s in samples]
    bound = generation_bound(-1, 256, longest_reference(collator, targets))
    assert bound < 100, "the bound should be far below max_new_tokens for this test"
    bounded, unbounded = transcribe(model, collator, images, bound), transcribe(model, collator, images, 256)
    assert bounded == unbounded == targets
    assert scores(targets, bounded) == scores(targets, unbounded)


@pytest.mark.parametrize("configured, ceiling, longest, expected", [
    (-1, 256, 71, 97),    # ceil(1.25 x 71) + 8
    (-1, 256, 80, 108),
    (-1, 80, 71, 80),     # never above max_new_tokens
    (-1, 256, 0, 8),      # no reference text at all
    (40, 256, 71, 40),    # a configured count is taken as it is (validated <= max_new_tokens)
])
def test_generation_bound(configured, ceiling, longest, expected):
    assert generation_bound(configured, ceiling, longest) == expected
