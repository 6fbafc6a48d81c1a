"""The collator: loss only on the transcription, prompts identical in training and generation."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoProcessor

from training.data.collator import IGNORE_INDEX, VisionChatCollator
from training.data.sources import SyntheticSplit
from training.model.standin import standin_path


@pytest.fixture(scope="module")
def collator():
    processor = AutoProcessor.from_pretrained(standin_path())
    return VisionChatCollator(processor, "Transcribe this well log header exactly.")


def test_labels_are_the_transcription_only(collator):
    samples = [SyntheticSplit("train", 4)[i] for i in range(3)]
    batch = collator(samples)
    tokenizer = collator.tokenizer
    for row, sample in enumerate(samples):
        labelled = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX]
        assert tokenizer.decode(labelled) == sample["text"] + "<|im_end|>"
        # the labelled tokens sit exactly where they are in the input
        mask = batch["labels"][row] != IGNORE_INDEX
        assert torch.equal(batch["input_ids"][row][mask], labelled)


def test_padding_is_masked_and_right_aligned(collator):
    samples = [SyntheticSplit("train", 4)[i] for i in range(4)]
    batch = collator(samples)
    lengths = batch["attention_mask"].sum(dim=1)
    assert len(set(lengths.tolist())) > 1, "samples should differ in length for this test"
    for row, length in enumerate(lengths.tolist()):
        assert batch["attention_mask"][row][:length].all() and not batch["attention_mask"][row][length:].any()
        assert (batch["labels"][row][length:] == IGNORE_INDEX).all()
    image_tokens = (batch["input_ids"] == collator.processor.image_token_id).sum()
    assert image_tokens * 4 == batch["pixel_values"].shape[0]  # 2x2 patches merge into one token


def test_generation_prompt_equals_training_prompt(collator):
    sample = SyntheticSplit("train", 1)[0]
    train_ids = collator([sample])["input_ids"][0]
    labels = collator([sample])["labels"][0]
    prompt_ids = collator.generation_inputs([sample["image"]])["input_ids"][0]
    assert torch.equal(train_ids[labels == IGNORE_INDEX][: len(prompt_ids)], prompt_ids)
    assert collator.tokenizer.decode(prompt_ids).endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("cap", [16384, 4096])
def test_image_max_pixels_shrinks_what_reaches_the_vision_tower(collator, cap):
    # Through the real processor: transformers 5.17 drops a lone max_pixels without a word.
    sample = SyntheticSplit("train", 1)[0]
    full = collator([sample])["image_grid_thw"][0]
    capped = VisionChatCollator(collator.processor, "Transcribe this well log header exactly.", image_max_pixels=cap)
    batch = capped([sample])
    grid = batch["image_grid_thw"][0]
    patch = collator.processor.image_processor.patch_size
    assert grid.prod() < full.prod()
    assert int(grid[1] * grid[2]) * patch * patch <= cap  # patches of the resized image, within the cap
    image_tokens = (batch["input_ids"] == collator.processor.image_token_id).sum()
    assert image_tokens * 4 == batch["pixel_values"].shape[0] == int(grid.prod())


def test_a_cap_above_the_processors_own_bound_changes_nothing(collator):
    # The default cap (1.3 MP) is far above the stand-in's own bound (256 x 128): a cap only ever
    # lowers the processor's bound, never raises it.
    sample = SyntheticSplit("train", 1)[0]
    own = collator([sample])
    capped = VisionChatCollator(collator.processor, "Transcribe this well log header exactly.",
                                image_max_pixels=1280 * 32 * 32)([sample])
    assert torch.equal(capped["image_grid_thw"], own["image_grid_thw"])
