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
import json
import logging
import os
import re
import sys
from dataclasses import dataclass

from configs.base import TrainingConfig
from training.errors import UserError
from training.hub.access import hf_token, is_local_path
from training.model.backends import TRANSFORMERS, UNSLOTH
from training.model.standin import is_standin, standin_path

log = logging.getLogger(__name__)

# What Unsloth patches when it is imported, and so wants imported after it.
PATCHED_BY_UNSLOTH = ("transformers", "peft", "trl")


@dataclass
class LoadedModel:
    model: object  # a PEFT model: base frozen, adapter (and modules_to_save) trainable
    processor: object
    backend: str


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def native_bf16() -> bool:
    """Whether the GPU computes in bf16 in hardware (Ampere and newer). torch's default answer
    counts emulation, True on a T4 or an RTX 20xx, where Unsloth loads the model in fp16."""
    import torch

    return torch.cuda.is_bf16_supported(including_emulation=False)


def compute_dtype(has_cuda: bool):
    """The one precision choice for a run: its weights, the Trainer's mixed precision and
    inference. bf16 where native, fp16 on older GPUs, fp32 on the CPU."""
    import torch

    if not has_cuda:
        return torch.float32
    return torch.bfloat16 if native_bf16() else torch.float16


def unsloth_installed() -> bool:
    return importlib.util.find_spec(UNSLOTH) is not None


def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


# Unsloth's naming of checkpoints saved already quantized: "<base>-bnb-4bit", "<base>-unsloth-bnb-4bit".
_PREQUANTIZED_SUFFIX = re.compile(r"-(unsloth-)?bnb-4bit$", re.IGNORECASE)


def prequantized(model_name: str) -> bool:
    """Whether the checkpoint itself holds 4-bit bitsandbytes weights, whatever load_in_4bit says:
    a local folder by its config.json, a hub model by Unsloth's -bnb-4bit naming."""
    if is_standin(model_name):
        return False
    if is_local_path(model_name):
        try:
            with open(os.path.join(os.path.expanduser(model_name), "config.json"), encoding="utf-8") as source:
                quantization = json.load(source).get("quantization_config") or {}
        except (OSError, ValueError, AttributeError):
            return False
        return quantization.get("quant_method") == "bitsandbytes" and bool(quantization.get("load_in_4bit"))
    return bool(_PREQUANTIZED_SUFFIX.search(model_name))


def unquantized_name(model_name: str) -> str | None:
    """The hub model a -bnb-4bit checkpoint was quantized from (Unsloth publishes both), if named so."""
    if is_local_path(model_name) or not _PREQUANTIZED_SUFFIX.search(model_name):
        return None
    return _PREQUANTIZED_SUFFIX.sub("", model_name)


def weight_format(model) -> str:
    """How the frozen base weights are held, read from the loaded model (never from the config)."""
    if getattr(model, "is_loaded_in_4bit", False):
        return "4-bit (bitsandbytes)"
    if getattr(model, "is_loaded_in_8bit", False):
        return "8-bit (bitsandbytes)"
    frozen = {str(p.dtype).replace("torch.", "") for p in model.parameters() if not p.requires_grad}
    return "/".join(sorted(frozen)) or "none frozen"


def select_backend(config: TrainingConfig, has_cuda: bool, has_unsloth: bool) -> str:
    """Which backend a run uses; a forced "unsloth" without CUDA is a user error."""
    if config.backend == UNSLOTH:
        if not has_cuda or not has_unsloth:
            missing = "a CUDA GPU" if not has_cuda else "the unsloth package (pip install -e '.[gpu]')"
            raise UserError(f"backend='unsloth': needs {missing}; use backend='auto' to fall back "
                            "to transformers + PEFT")
        return UNSLOTH
    if config.backend == TRANSFORMERS:
        return TRANSFORMERS
    # The stand-in too: on a GPU it is the CUDA path's offline check (make gpu-check).
    return UNSLOTH if has_cuda and has_unsloth else TRANSFORMERS


def prepare_backend(backend: str) -> None:
    """On the Unsloth backend, import unsloth before anything imports transformers, peft or trl:
    it patches them on import, and what was imported first misses its patches. train.py and
    evaluate.py call this as soon as the backend is known. The transformers backend never imports
    it (it would patch the CPU path too)."""
    if backend != UNSLOTH or "unsloth" in sys.modules:
        return
    early = [name for name in PATCHED_BY_UNSLOTH if name in sys.modules]
    if early:
        log.warning("unsloth is imported after %s: Unsloth's patches to them may be missing", ", ".join(early))
    import unsloth  # noqa: F401


def choose_backend(config: TrainingConfig) -> tuple[str | None, str | None]:
    """(backend, None) for this machine, or (None, why not): preflight reports the why with the rest."""
    try:
        return select_backend(config, cuda_available(), unsloth_installed()), None
    except UserError as error:
        return None, error.problems[0]


def split_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def target_modules(config: TrainingConfig):
    names = split_names(config.lora_target_modules)
    return "all-linear" if names == ["all-linear"] else names


def unsloth_load_kwargs(config: TrainingConfig, dtype=None) -> dict:
    """Arguments of FastVisionModel.from_pretrained for this config; `dtype` as compute_dtype
    chose it, so the model and the Trainer's mixed precision agree (None: Unsloth's own choice)."""
    return dict(
        model_name=model_source(config),  # the stand-in's built folder: Unsloth would look its name up on the Hub
        dtype=dtype,
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
    prepare_backend(UNSLOTH)  # a no-op when train.py already did it, as it should have
    from unsloth import FastVisionModel

    model, processor = FastVisionModel.from_pretrained(**unsloth_load_kwargs(config, compute_dtype(True)))
    model = FastVisionModel.get_peft_model(model, **unsloth_peft_kwargs(config))
    FastVisionModel.for_training(model)
    return LoadedModel(model, processor, UNSLOTH)


def _load_transformers(config: TrainingConfig) -> LoadedModel:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor, set_seed

    source = model_source(config)
    dtype = compute_dtype(torch.cuda.is_available())
    if config.load_in_4bit and not is_standin(config.model_name):
        log.warning("load_in_4bit=True is ignored by the transformers backend: the base loads as stored, "
                    "computing in %s", str(dtype).replace("torch.", ""))
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
