"""Rough resource estimates for a run, before paying for it: GPU memory and checkpoint disk space.

Pure functions of the config and a model shape. They aim to catch a run that cannot fit (a 24 GB
card for an 8B model in 16-bit, a nearly full volume), not to predict the allocator to the MB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from configs.base import TrainingConfig
from training.model.backends import UNSLOTH, optimizer_name
from training.model.standin import MAX_PIXELS as STANDIN_MAX_PIXELS
from training.model.standin import TEXT, VOCAB_SIZE, is_standin

GIB = 1024**3
# Qwen3-VL patches are 16 px merged 2 x 2: one image token per 32 x 32 pixels.
PIXELS_PER_IMAGE_TOKEN = 32 * 32
# With image_max_pixels=-1 an image is bounded only by the processor's own size.longest_edge:
# Qwen3-VL's preprocessor config says 16777216 (16384 image tokens); the stand-in's is its own.
QWEN3_VL_MAX_PIXELS = 16_777_216
PROMPT_TOKENS = 64  # chat template and instruction
CUDA_OVERHEAD_BYTES = 1.0 * GIB  # context, kernels, allocator slack
# Stored activations per token, per layer, per hidden unit, in bytes (16-bit): only the layer inputs
# with gradient checkpointing, every intermediate without it (Korthikanti et al. 2022, eq. 2).
ACTIVATION_BYTES = {True: 4, False: 34}
MIN_FREE_DISK_BYTES = 256 * 1024**2  # logs, metrics, run files, slack


@dataclass(frozen=True)
class ModelShape:
    params: float  # all parameters, vision tower included
    hidden: int  # text hidden size
    layers: int  # text decoder layers
    vocab: int


# Approximate shapes of the Qwen3-VL family, keyed by the size in the model's name.
QWEN3_VL = {
    "2b": ModelShape(2.1e9, 2048, 28, 151_936),
    "4b": ModelShape(4.4e9, 2560, 36, 151_936),
    "8b": ModelShape(8.8e9, 4096, 36, 151_936),
    "32b": ModelShape(33e9, 5120, 64, 151_936),
}
STANDIN = ModelShape(2e6, TEXT["hidden_size"], TEXT["num_hidden_layers"], VOCAB_SIZE)
_SIZE = re.compile(r"qwen3-vl-(\d+b)", re.IGNORECASE)


def model_shape(model_name: str) -> ModelShape | None:
    """The shape of a known model, or None when its size cannot be told from the name."""
    if is_standin(model_name):
        return STANDIN
    match = _SIZE.search(model_name)
    return QWEN3_VL.get(match.group(1).lower()) if match else None


def gpu_weight_bytes_per_param(config: TrainingConfig, backend: str) -> float:
    if backend == UNSLOTH and config.load_in_4bit:
        return 0.7  # 4-bit blocks with their scales; Unsloth's dynamic quants keep some layers in 16-bit
    return 2.0  # bf16: both backends on a GPU


def optimizer_bytes_per_param(config: TrainingConfig, backend: str) -> int:
    """Adapter weight, gradient and optimizer state, per trainable parameter."""
    states = {"adamw_torch": 8, "adamw_8bit": 2, "paged_adamw_8bit": 2, "sgd": 0}[optimizer_name(config, backend)]
    return 4 + 4 + states


def trainable_params(config: TrainingConfig, shape: ModelShape) -> float:
    # LoRA on all linear layers of a decoder layer (q, k, v, o, gate, up, down) adds r x (in + out)
    # per layer, about r x 20 x hidden; modules_to_save train a full copy of the output head.
    lora = config.r * shape.layers * 20 * shape.hidden
    head = shape.hidden * shape.vocab if "lm_head" in config.lora_modules_to_save else 0
    return lora + head


def processor_max_pixels(model_name: str) -> int:
    return STANDIN_MAX_PIXELS if is_standin(model_name) else QWEN3_VL_MAX_PIXELS


def image_max_pixels(config: TrainingConfig) -> int:
    """The most pixels an image can reach the vision tower with: the cap, within the processor's bound."""
    own = processor_max_pixels(config.model_name)
    return min(config.image_max_pixels, own) if config.image_max_pixels > 0 else own


def image_tokens(config: TrainingConfig) -> int:
    """Image tokens of the largest image the run can be given (the estimate plans for the worst)."""
    return image_max_pixels(config) // PIXELS_PER_IMAGE_TOKEN


def image_bound(config: TrainingConfig) -> str:
    """What preflight's gpu row says about the image size its estimate assumed."""
    pixels = image_max_pixels(config)
    where = "image_max_pixels" if config.image_max_pixels > 0 else \
        f"image_max_pixels=-1: {'the stand-in' if is_standin(config.model_name) else 'Qwen3-VL'}'s own bound"
    return f"images up to {pixels / 1e6:.1f} MP ({image_tokens(config)} image tokens; {where})"


def tokens_per_sample(config: TrainingConfig) -> int:
    return image_tokens(config) + config.max_new_tokens + PROMPT_TOKENS


def gpu_memory_bytes(config: TrainingConfig, shape: ModelShape, backend: str) -> float:
    """Peak GPU memory of a training step: weights, adapter and optimizer, activations, logits."""
    batch_tokens = config.per_device_train_batch_size * tokens_per_sample(config)
    weights = shape.params * gpu_weight_bytes_per_param(config, backend)
    adapter = trainable_params(config, shape) * optimizer_bytes_per_param(config, backend)
    activations = batch_tokens * shape.layers * shape.hidden * ACTIVATION_BYTES[config.gradient_checkpointing]
    logits = batch_tokens * shape.vocab * 4  # 16-bit logits and their gradient
    return weights + adapter + activations + logits + CUDA_OVERHEAD_BYTES


def checkpoint_disk_bytes(config: TrainingConfig, shape: ModelShape | None, backend: str) -> float:
    """Free space the run needs: every kept checkpoint, one being written, the final adapter."""
    if shape is None:
        return float(GIB) + MIN_FREE_DISK_BYTES
    trainable = trainable_params(config, shape)
    per_checkpoint = trainable * (optimizer_bytes_per_param(config, backend) - 4)  # no gradients on disk
    kept = config.keep_best + config.keep_recent + 1
    return per_checkpoint * kept + trainable * 4 + MIN_FREE_DISK_BYTES


def gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"
