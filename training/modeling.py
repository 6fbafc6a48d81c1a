"""The model and its LoRA adapter, from one of two backends that feed the same trainer.

- "unsloth": CUDA and unsloth installed. FastVisionModel loads the (4-bit) base and adds LoRA
  with Unsloth's recipe. The keyword arguments are built by pure functions below so tests can
  check each one against the installed unsloth's real signatures without a GPU.
- "transformers": everywhere else. AutoModelForImageTextToText in full precision + PEFT LoRA.
  It never imports unsloth, which patches transformers on import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from dataclasses import dataclass

from configs.base import TrainingConfig
from training.errors import UserError
from training.hub import hf_token
from training.standin import is_standin, standin_path

log = logging.getLogger(__name__)

UNSLOTH = "unsloth"
TRANSFORMERS = "transformers"


@dataclass
class LoadedModel:
    model: object  # a PEFT model: base frozen, adapter (and modules_to_save) trainable
    processor: object
    backend: str


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def unsloth_installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def select_backend(config: TrainingConfig, has_cuda: bool, has_unsloth: bool) -> str:
    """Which backend a run uses; a forced "unsloth" without CUDA is a user error."""
    if config.backend == UNSLOTH:
        if not has_cuda or not has_unsloth:
            missing = "a CUDA GPU" if not has_cuda else "the unsloth package (pip install -e '.[gpu]')"
            raise UserError(f"backend='unsloth': needs {missing}; use backend='auto' to fall back "
                            "to transformers + PEFT")
        return UNSLOTH
    if config.backend == TRANSFORMERS or is_standin(config.model_name):
        return TRANSFORMERS
    return UNSLOTH if has_cuda and has_unsloth else TRANSFORMERS


def split_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def target_modules(config: TrainingConfig):
    names = split_names(config.lora_target_modules)
    return "all-linear" if names == ["all-linear"] else names


def unsloth_load_kwargs(config: TrainingConfig) -> dict:
    """Arguments of FastVisionModel.from_pretrained for this config."""
    return dict(
        model_name=config.model_name,
        load_in_4bit=config.load_in_4bit,
        use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
        token=hf_token(),
        random_state=config.seed,
    )


def unsloth_peft_kwargs(config: TrainingConfig) -> dict:
    """Arguments of FastVisionModel.get_peft_model for this config (Unsloth's vision recipe)."""
    targets = target_modules(config)
    return dict(
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        bias="none",
        finetune_vision_layers=config.finetune_vision_layers,
        finetune_language_layers=config.finetune_language_layers,
        finetune_attention_modules=True,
        finetune_mlp_modules=True,
        # None lets Unsloth pick the linear layers of the selected parts itself.
        target_modules=None if targets == "all-linear" else targets,
        modules_to_save=split_names(config.lora_modules_to_save) or None,
        use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
        random_state=config.seed,
        use_rslora=False,
        loftq_config=None,
    )


def peft_lora_config(config: TrainingConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        bias="none",
        target_modules=target_modules(config),
        modules_to_save=split_names(config.lora_modules_to_save) or None,
        task_type="CAUSAL_LM",
    )


def model_source(config: TrainingConfig) -> str:
    """Where the base weights come from: the built stand-in's directory, or the configured name."""
    return str(standin_path(config.model_name)) if is_standin(config.model_name) else config.model_name


def load_model(config: TrainingConfig, backend: str) -> LoadedModel:
    """The base model with a fresh LoRA adapter, seeded so the adapter starts the same every run."""
    if backend == UNSLOTH:
        return _load_unsloth(config)
    return _load_transformers(config)


def _load_unsloth(config: TrainingConfig) -> LoadedModel:
    import unsloth  # noqa: F401  (patches transformers; must precede the model classes)
    from unsloth import FastVisionModel

    model, processor = FastVisionModel.from_pretrained(**unsloth_load_kwargs(config))
    model = FastVisionModel.get_peft_model(model, **unsloth_peft_kwargs(config))
    FastVisionModel.for_training(model)
    return LoadedModel(model, processor, UNSLOTH)


def _load_transformers(config: TrainingConfig) -> LoadedModel:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor, set_seed

    source = model_source(config)
    if config.load_in_4bit and not is_standin(config.model_name):
        log.warning("load_in_4bit=True is ignored by the transformers backend: loading in full precision")
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    processor = AutoProcessor.from_pretrained(source, token=hf_token())
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, token=hf_token())
    if torch.cuda.is_available():
        model = model.to("cuda")
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    # Seeded here, after the base is loaded (or the stand-in built), so only the seed decides
    # the adapter's initial weights.
    set_seed(config.seed)
    model = get_peft_model(model, peft_lora_config(config))
    return LoadedModel(model, processor, TRANSFORMERS)


@contextlib.contextmanager
def inference_mode(model, backend: str):
    """Generation during training: Unsloth needs its inference switch, and back after."""
    if backend != UNSLOTH:
        yield model
        return
    from unsloth import FastVisionModel

    FastVisionModel.for_inference(model)
    try:
        yield model
    finally:
        FastVisionModel.for_training(model)


# Unsloth's fused loss returns empty logits unless this is "1"; read at each forward.
UNSLOTH_RETURN_LOGITS = "UNSLOTH_RETURN_LOGITS"


@contextlib.contextmanager
def eval_logits(backend: str):
    """The eval-loss pass with its logits, which give each sample's loss: Unsloth's fused loss skips
    them unless asked (as its own trainer asks around evaluation); restored after."""
    if backend != UNSLOTH:
        yield
        return
    import os

    previous = os.environ.get(UNSLOTH_RETURN_LOGITS)
    os.environ[UNSLOTH_RETURN_LOGITS] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(UNSLOTH_RETURN_LOGITS, None)
        else:
            os.environ[UNSLOTH_RETURN_LOGITS] = previous
