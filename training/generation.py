"""Greedy transcription of images by the model being trained or evaluated."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from training.signals import EvaluationStopped

StopCheck = Callable[[], object]  # truthy once a stop is requested (training.signals.StopSignals.requested)


class StopOnRequest(StoppingCriteria):
    """Ends generation at the next token once a stop is requested: one greedy batch can take far
    longer than RunPod's 5 s grace."""

    def __init__(self, should_stop: StopCheck):
        self.should_stop = should_stop

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), bool(self.should_stop()), dtype=torch.bool, device=input_ids.device)


def check_stop(should_stop: StopCheck | None) -> None:
    """Between batches of an evaluation: raise EvaluationStopped once a stop is requested."""
    if should_stop is not None and should_stop():
        raise EvaluationStopped


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


def transcribe(model, collator, images: list, max_new_tokens: int, batch_size: int = 8,
               should_stop: StopCheck | None = None) -> list[str]:
    """Greedy decoding from the training prompt; returns the text of each image, special tokens removed.
    With `should_stop`, a stop request ends it within a token and raises EvaluationStopped (a
    cut-short transcription is never returned)."""
    tokenizer = collator.tokenizer
    texts: list[str] = []
    stopping = StoppingCriteriaList([StopOnRequest(should_stop)] if should_stop is not None else [])
    with evaluating(model) as device:
        for start in range(0, len(images), batch_size):
            check_stop(should_stop)
            inputs = collator.generation_inputs(images[start:start + batch_size])
            inputs = {k: v.to(device) for k, v in inputs.items()}
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=collator.pad_id, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                    stopping_criteria=stopping)
            check_stop(should_stop)
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            texts.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return texts
