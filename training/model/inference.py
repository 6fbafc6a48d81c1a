"""Loading a trained adapter (output_dir/final or any checkpoint) for transcription."""

from __future__ import annotations

import os

from configs.base import TrainingConfig
from training.errors import UserError
from training.hub.access import hf_token
from training.model.loading import UNSLOTH, LoadedModel, compute_dtype, model_source


def load_trained(directory: str, config: TrainingConfig, backend: str) -> LoadedModel:
    """The base model of `config` with the adapter in `directory`, in eval mode."""
    if not os.path.exists(os.path.join(directory, "adapter_config.json")):
        raise UserError(f"--model {directory}: no adapter_config.json; give output_dir/final "
                        "or a checkpoint-<step> directory")
    if backend == UNSLOTH:
        from unsloth import FastVisionModel

        model, processor = FastVisionModel.from_pretrained(model_name=directory, load_in_4bit=config.load_in_4bit,
                                                           dtype=compute_dtype(True), token=hf_token())
        FastVisionModel.for_inference(model)
        return LoadedModel(model, processor, backend)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source = model_source(config)
    has_processor = os.path.exists(os.path.join(directory, "processor_config.json"))
    processor = AutoProcessor.from_pretrained(directory if has_processor else source, token=hf_token())
    dtype = compute_dtype(torch.cuda.is_available())
    base = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, token=hf_token())
    model = PeftModel.from_pretrained(base, directory)
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return LoadedModel(model, processor, backend)
