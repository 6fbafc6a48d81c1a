"""Greedy transcription of images by the model being trained or evaluated."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def evaluating(model):
    """The model in eval mode, without gradients, for the block (it may be mid-training); yields
    its device, and leaves the model in the mode it found it in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)


def transcribe(model, collator, images: list, max_new_tokens: int, batch_size: int = 8) -> list[str]:
    """Greedy decoding from the training prompt; returns the text of each image, special tokens removed."""
    tokenizer = collator.tokenizer
    texts: list[str] = []
    with evaluating(model) as device:
        for start in range(0, len(images), batch_size):
            inputs = collator.generation_inputs(images[start:start + batch_size])
            inputs = {k: v.to(device) for k, v in inputs.items()}
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=collator.pad_id, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            texts.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return texts
