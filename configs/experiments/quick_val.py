"""Quick validation: the whole pipeline on the offline stand-ins in well under a minute on a CPU.

    python training/train.py --config configs/experiments/quick_val.py
"""

from configs.base import STANDIN_MODEL, SYNTHETIC_DATASET, TrainingConfig

config = TrainingConfig(
    # Offline stand-ins: a miniature Qwen3-VL and rendered headers, so no hub and no GPU are needed.
    model_name=STANDIN_MODEL,
    dataset_name=SYNTHETIC_DATASET,
    # 4 bits where the backend quantizes (Unsloth, on a GPU: make gpu-check); the transformers
    # backend on a CPU loads the stand-in in full precision either way.
    load_in_4bit=True,
    gradient_checkpointing=False,
    # A random miniature only learns with its output head trainable and a large LoRA step.
    r=32,
    lora_alpha=32,
    lora_modules_to_save="lm_head",
    learning_rate=5e-3,
    warmup_steps=0,
    max_steps=10,
    train_subset=100,
    eval_subset=8,
    max_new_tokens=80,
    # Log, evaluate and save often so every path (metrics, checkpoints, retention) runs.
    logging_steps=1,
    eval_steps=5,
    save_steps=5,
    keep_best=1,
    keep_recent=1,
    budget_cap=0.0,
)
