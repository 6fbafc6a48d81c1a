"""Samples to model inputs: chat prompt with the image, transcription as the only labelled tokens.

The prompt (user turn with the image, then the assistant header) goes through the processor,
which expands the image placeholder; the transcription and end-of-turn are tokenized apart and
appended. Labels are -100 over the prompt and padding, so the loss is on the transcription alone,
and generation at evaluation starts from exactly the prompt seen in training.
"""

from __future__ import annotations

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


class VisionChatCollator:
    def __init__(self, processor, instruction: str, image_max_pixels: int = -1):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.prompt = processor.apply_chat_template(prompt_messages(instruction), tokenize=False,
                                                    add_generation_prompt=True)
        self.image_kwargs = pixel_bounds(processor.image_processor, image_max_pixels)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def encode_prompts(self, images: list) -> dict:
        """Prompt tokens and pixels for each image, unpadded: one list of ids per sample."""
        return self.processor(text=[self.prompt] * len(images), images=images, padding=False,
                              images_kwargs=self.image_kwargs)

    def __call__(self, samples: list[dict]) -> dict:
        return self.collate([s["image"] for s in samples], [s["text"] for s in samples], with_labels=True)

    def collate(self, images: list, texts: list[str] | None, with_labels: bool, padding_side: str = "right") -> dict:
        prompts = self.encode_prompts(images)
        sequences, labels, token_types = [], [], []
        for i, prompt_ids in enumerate(prompts["input_ids"]):
            prompt_ids = list(prompt_ids)
            target = self.tokenizer(texts[i] + END_OF_TURN, add_special_tokens=False)["input_ids"] if with_labels else []
            sequences.append(prompt_ids + target)
            labels.append([IGNORE_INDEX] * len(prompt_ids) + target)
            types = list(prompts["mm_token_type_ids"][i]) if "mm_token_type_ids" in prompts else None
            token_types.append(None if types is None else types + [0] * len(target))
        width = max(len(s) for s in sequences)

        def pad(rows: list[list[int]], value: int) -> torch.Tensor:
            padded = [[value] * (width - len(r)) + r if padding_side == "left" else r + [value] * (width - len(r))
                      for r in rows]
            return torch.tensor(padded, dtype=torch.long)

        batch = {
            "input_ids": pad(sequences, self.pad_id),
            "attention_mask": pad([[1] * len(s) for s in sequences], 0),
            "pixel_values": torch.as_tensor(prompts["pixel_values"]),
            "image_grid_thw": torch.as_tensor(prompts["image_grid_thw"]),
        }
        if token_types[0] is not None:
            batch["mm_token_type_ids"] = pad(token_types, 0)
        if with_labels:
            batch["labels"] = pad(labels, IGNORE_INDEX)
        return batch

    def generation_inputs(self, images: list) -> dict:
        """Left-padded prompts for batched greedy decoding."""
        return self.collate(images, None, with_labels=False, padding_side="left")
