"""Samples to model inputs: chat prompt with the image, transcription as the only labelled tokens.

The prompt (user turn with the image, then the assistant header) goes through the processor,
which expands the image placeholder; the transcription and end-of-turn are tokenized apart and
appended. Labels are -100 over the prompt and padding, so the loss is on the transcription alone,
and generation at evaluation starts from exactly the prompt seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"


def prompt_messages(instruction: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]


def pixel_bounds(image_processor, max_pixels: int) -> dict:
    """The image processor's keyword arguments that cap each image at `max_pixels` (-1: its own bounds).

    transformers 5.17's Qwen2-VL image processor applies pixel bounds only as a pair, `size` with
    both shortest_edge (min pixels) and longest_edge (max pixels): `max_pixels` alone is dropped
    without a word and full-size scans reach the vision tower. The lower bound stays the
    processor's own, unless that is above the cap; a cap above the processor's own upper bound
    leaves that bound (a cap lowers, never raises).
    """
    if max_pixels <= 0:
        return {}
    own = getattr(image_processor, "size", None) or {}
    upper = min(max_pixels, own.get("longest_edge") or max_pixels)
    lower = min(own.get("shortest_edge") or upper, upper)
    return {"size": {"shortest_edge": lower, "longest_edge": upper}}


@dataclass(frozen=True)
class Encoded:
    """One sample as the model reads it, before padding: its prompt's token ids (the image's
    placeholder expanded) and the processor's pixel values for its image, and the token ids of its
    transcription with the end of turn (none for generation). What the eval set keeps, prepared once."""

    prompt_ids: list[int]
    token_types: list[int] | None  # mm_token_type_ids of the prompt, where the processor gives them
    pixel_values: torch.Tensor  # this image's patches
    image_grid_thw: torch.Tensor  # (1, 3)
    target_ids: list[int]

    def nbytes(self) -> int:
        ids = len(self.prompt_ids) + len(self.token_types or ()) + len(self.target_ids)
        return self.pixel_values.nbytes + self.image_grid_thw.nbytes + 8 * ids


def model_input(sample: dict):
    """What the collator encodes of a sample: its Encoded when the sample was prepared, else its image."""
    return sample["encoded"] if "encoded" in sample else sample["image"]


class VisionChatCollator:
    def __init__(self, processor, instruction: str, image_max_pixels: int = -1):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.prompt = processor.apply_chat_template(prompt_messages(instruction), tokenize=False,
                                                    add_generation_prompt=True)
        self.image_kwargs = pixel_bounds(processor.image_processor, image_max_pixels)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def target_ids(self, text: str) -> list[int]:
        """The labelled tokens of a transcription: what generation must produce, end of turn included."""
        return self.tokenizer(text + END_OF_TURN, add_special_tokens=False)["input_ids"]

    def encode(self, images: list, texts: list[str] | None = None) -> list[Encoded]:
        """Each image with the prompt (one processor call for all of them) and, with `texts`, its transcription."""
        if not images:
            return []
        prompts = self.processor(text=[self.prompt] * len(images), images=images, padding=False,
                                 images_kwargs=self.image_kwargs)
        grids = torch.as_tensor(prompts["image_grid_thw"])
        # The processor concatenates every image's patches: each image has t x h x w rows of them.
        pixels = torch.as_tensor(prompts["pixel_values"]).split(grids.prod(dim=1).tolist())
        token_types = prompts.get("mm_token_type_ids")
        return [Encoded(list(prompts["input_ids"][i]), None if token_types is None else list(token_types[i]),
                        pixels[i].clone(), grids[i:i + 1].clone(), self.target_ids(texts[i]) if texts else [])
                for i in range(len(images))]

    def encoded(self, items: list, texts: list[str] | None = None) -> list[Encoded]:
        """`items` (images, or samples already Encoded) encoded: the images in one processor call."""
        fresh = [i for i, item in enumerate(items) if not isinstance(item, Encoded)]
        made = iter(self.encode([items[i] for i in fresh], [texts[i] for i in fresh] if texts else None))
        return [item if isinstance(item, Encoded) else next(made) for item in items]

    def __call__(self, samples: list[dict]) -> dict:
        return self.pad(self.encoded([model_input(s) for s in samples], [s["text"] for s in samples]),
                        with_labels=True)

    def pad(self, encoded: list[Encoded], with_labels: bool, padding_side: str = "right") -> dict:
        """One batch of model inputs: the samples' tokens padded to the longest, their patches concatenated."""
        sequences, labels, token_types = [], [], []
        for sample in encoded:
            target = sample.target_ids if with_labels else []
            sequences.append(sample.prompt_ids + target)
            labels.append([IGNORE_INDEX] * len(sample.prompt_ids) + target)
            types = sample.token_types
            token_types.append(None if types is None else types + [0] * len(target))
        width = max(len(s) for s in sequences)

        def pad(rows: list[list[int]], value: int) -> torch.Tensor:
            padded = [[value] * (width - len(r)) + r if padding_side == "left" else r + [value] * (width - len(r))
                      for r in rows]
            return torch.tensor(padded, dtype=torch.long)

        batch = {
            "input_ids": pad(sequences, self.pad_id),
            "attention_mask": pad([[1] * len(s) for s in sequences], 0),
            "pixel_values": torch.cat([s.pixel_values for s in encoded]),
            "image_grid_thw": torch.cat([s.image_grid_thw for s in encoded]),
        }
        if token_types[0] is not None:
            batch["mm_token_type_ids"] = pad(token_types, 0)
        if with_labels:
            batch["labels"] = pad(labels, IGNORE_INDEX)
        return batch

    def generation_inputs(self, items: list) -> dict:
        """Left-padded prompts for batched greedy decoding, of images or samples already Encoded."""
        return self.pad(self.encoded(items), with_labels=False, padding_side="left")
