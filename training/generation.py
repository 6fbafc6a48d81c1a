"""Greedy transcription of images by the model being trained or evaluated."""

from __future__ import annotations

import contextlib

import torch

from training.data.collator import END_OF_TURN


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


# Images transcribed at once when eval_generate_batch_size is -1: on a GPU a batch costs about what
# one sequence does until the KV cache fills memory; on CPU larger batches stop paying off sooner.
AUTO_BATCH_GPU = 16
AUTO_BATCH_CPU = 8


def generation_batch_size(configured: int, has_cuda: bool) -> int:
    if configured != -1:
        return configured
    return AUTO_BATCH_GPU if has_cuda else AUTO_BATCH_CPU


def transcribe(model, collator, images: list, max_new_tokens: int, batch_size: int = AUTO_BATCH_CPU,
               stopping_criteria: list | None = None) -> list[str]:
    """Greedy decoding from the training prompt; returns the text of each image, special tokens removed.

    Each batch ends as soon as every sequence in it has produced its end of turn. `stopping_criteria`
    (transformers StoppingCriteria) are checked after every generated token, e.g. to give up on a
    stop signal."""
    from transformers import StoppingCriteriaList

    tokenizer = collator.tokenizer
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    texts: list[str] = []
    with evaluating(model) as device:
        for start in range(0, len(images), batch_size):
            inputs = collator.generation_inputs(images[start:start + batch_size])
            inputs = {k: v.to(device) for k, v in inputs.items()}
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=collator.pad_id, eos_token_id=end_of_turn,
                                    stopping_criteria=StoppingCriteriaList(stopping_criteria or []))
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            texts.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return texts
