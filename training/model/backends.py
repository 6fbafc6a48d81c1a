"""The two backends' names and the rules that depend only on which one a run uses (light to import:
preflight and the estimates read them before any model code is loaded)."""

from __future__ import annotations

from configs.base import TrainingConfig

UNSLOTH = "unsloth"  # CUDA + unsloth: FastVisionModel, 4-bit QLoRA
TRANSFORMERS = "transformers"  # everywhere else: transformers + PEFT in full precision


def optimizer_name(config: TrainingConfig, backend: str) -> str:
    """optim="auto": Unsloth's 8-bit AdamW on its backend (bitsandbytes is there), torch's AdamW elsewhere."""
    if config.optim != "auto":
        return config.optim
    return "adamw_8bit" if backend == UNSLOTH else "adamw_torch"
