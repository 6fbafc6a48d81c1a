"""The Hugging Face Trainer as this harness runs it: arguments from the config, our callbacks."""

from __future__ import annotations

from transformers import PrinterCallback, Trainer, TrainingArguments

from configs.base import TrainingConfig
from training.modeling import UNSLOTH


def optimizer_name(config: TrainingConfig, backend: str) -> str:
    if config.optim != "auto":
        return config.optim
    return "adamw_8bit" if backend == UNSLOTH else "adamw_torch"


def training_arguments(config: TrainingConfig, backend: str, has_cuda: bool) -> TrainingArguments:
    import torch

    bf16 = has_cuda and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=config.output_dir,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type=config.lr_scheduler_type,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        optim=optimizer_name(config, backend),
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=None,
        bf16=bf16,
        fp16=has_cuda and not bf16,
        use_cpu=not has_cuda,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        label_names=["labels"],
        prediction_loss_only=True,
        dataloader_num_workers=0,
    )


class HarnessTrainer(Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.remove_callback(PrinterCallback)  # training.progress prints instead
