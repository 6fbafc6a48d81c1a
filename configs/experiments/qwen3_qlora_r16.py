"""Qwen3-VL 2B QLoRA, rank 16, on the well-log header dataset: the baseline real run.

    python training/train.py --config configs/experiments/qwen3_qlora_r16.py
"""

from configs.base import TrainingConfig

# The defaults of configs/base.py are this run: the 4-bit Unsloth model, the hub dataset,
# r=16, 500 steps, W&B on, a 10 USD budget cap. Branches derived from it change only what differs.
config = TrainingConfig()
