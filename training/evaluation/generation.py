"""Greedy transcription of images by the model being trained or evaluated."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from training.data.collator import END_OF_TURN
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


# Images transcribed at once when eval_generate_batch_size is -1: on a GPU a batch costs about what
# one sequence does until the KV cache fills memory. On CPU (the stand-in) a token step is mostly
# fixed cost too: 64 transcriptions took 1.5 s in batches of 8 and 0.5 s in one batch of 64
# (benchmarks/run.py --only eval).
AUTO_BATCH_GPU = 16
AUTO_BATCH_CPU = 64


def generation_batch_size(configured: int, has_cuda: bool) -> int:
    if configured != -1:
        return configured
    return AUTO_BATCH_GPU if has_cuda else AUTO_BATCH_CPU


# eval_max_new_tokens=-1: room for a transcription a quarter longer than the longest reference, and a
# few tokens more. A model that has learnt the task ends within it; one that has not would otherwise
# generate to max_new_tokens (256) for every sample at every evaluation.
AUTO_BOUND_FACTOR = 1.25
AUTO_BOUND_EXTRA = 8


def generation_bound(configured: int, max_new_tokens: int, longest_reference: int) -> int:
    """Tokens generated at most for a transcription scored against references whose longest is
    `longest_reference` tokens (configs/base.py eval_max_new_tokens)."""
    if configured != -1:
        return configured
    return min(max_new_tokens, math.ceil(AUTO_BOUND_FACTOR * longest_reference) + AUTO_BOUND_EXTRA)


def longest_reference(collator, texts: list[str]) -> int:
    """The most tokens any of `texts` takes to generate, its end of turn included (no text: 0)."""
    return max((len(collator.target_ids(text)) for text in texts if text), default=0)


def transcribe(model, collator, images: list, max_new_tokens: int, batch_size: int = AUTO_BATCH_CPU,
               should_stop: StopCheck | None = None, stopping_criteria: list | None = None) -> list[str]:
    """Greedy decoding from the training prompt; returns the text of each image (or sample already
    Encoded by the collator), special tokens removed.

    Each batch ends as soon as every sequence in it has produced its end of turn. With
    `should_stop`, a stop request ends it within a token and raises EvaluationStopped (a cut-short
    transcription is never returned). `stopping_criteria`: more transformers StoppingCriteria,
    checked after every generated token too."""
    tokenizer = collator.tokenizer
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    texts: list[str] = []
    stopping = StoppingCriteriaList([*([StopOnRequest(should_stop)] if should_stop is not None else []),
                                     *(stopping_criteria or [])])
    with evaluating(model) as device:
        for start in range(0, len(images), batch_size):
            check_stop(should_stop)
            inputs = collator.generation_inputs(images[start:start + batch_size])
            inputs = {k: v.to(device) for k, v in inputs.items()}
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=collator.pad_id, eos_token_id=end_of_turn,
                                    stopping_criteria=stopping)
            check_stop(should_stop)
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            texts.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return texts
