"""Loading a trained adapter (output_dir/final or any checkpoint) for transcription."""

from __future__ import annotations

import json
import os

from configs.base import TrainingConfig
from training.errors import UserError
from training.hub import hf_token
from training.modeling import UNSLOTH, LoadedModel, compute_dtype, model_source

CONFIG_FILE = "training_config.json"


def write_config(config: TrainingConfig, directory: str) -> None:
    import dataclasses

    from training.run_status import write_json_atomic

    write_json_atomic(os.path.join(directory, CONFIG_FILE), dataclasses.asdict(config))


def saved_config(directory: str) -> TrainingConfig | None:
    """The config a final adapter or a checkpoint was trained with, if it recorded one."""
    from training.state import HARNESS_STATE_FILE

    candidates = [(os.path.join(directory, CONFIG_FILE), None),
                  (os.path.join(directory, HARNESS_STATE_FILE), "config"),
                  (os.path.join(os.path.dirname(os.path.abspath(directory)), CONFIG_FILE), None)]
    for path, key in candidates:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as source:
                values = json.load(source)
            values = values.get(key, {}) if key else values
            known = set(TrainingConfig.__dataclass_fields__)
            return TrainingConfig(**{k: v for k, v in values.items() if k in known})
    return None


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
