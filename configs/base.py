"""The one training config: every setting, its unit, its default and what a sentinel means.

An experiment file (configs/experiments/NAME.py) defines a module-level `config`, usually
`dataclasses.replace(parent, field=value, ...)` with only what differs. Constructing a
TrainingConfig validates it: every problem is collected and reported at once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from configs.layout import HUB_ID_PATTERN, RUN_NAME_PATTERN

STANDIN_MODEL = "standin:qwen3-vl-mini"
SYNTHETIC_DATASET = "synthetic:well-log-headers"
BACKENDS = ("auto", "unsloth", "transformers")
OPTIMIZERS = ("auto", "adamw_torch", "adamw_8bit", "paged_adamw_8bit", "sgd")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


class ConfigError(ValueError):
    """One or more problems with a config; `problems` holds one readable line each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class TrainingConfig:
    # --- model -------------------------------------------------------------------------------
    # Hub id, local directory, or "standin:qwen3-vl-mini" (offline miniature Qwen3-VL).
    model_name: str = "unsloth/Qwen3-VL-2B-Instruct-unsloth-bnb-4bit"
    # QLoRA: load the frozen base in 4-bit (Unsloth/CUDA backend only; the CPU backend uses fp32).
    # A pre-quantized checkpoint ("*-bnb-4bit") is 4-bit whatever this says.
    load_in_4bit: bool = True
    # "auto" = Unsloth when CUDA is present and unsloth imports, else transformers + PEFT.
    backend: str = "auto"
    # LoRA rank, scaling (alpha / r) and dropout.
    r: int = 16
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    # Modules that get LoRA adapters: "all-linear" or a comma-separated list of module names.
    lora_target_modules: str = "all-linear"
    # Modules trained in full and saved with the adapter, comma-separated ("" = none).
    lora_modules_to_save: str = ""
    # Unsloth's layer selection for vision models (ignored by the transformers backend,
    # which follows lora_target_modules).
    finetune_vision_layers: bool = True
    finetune_language_layers: bool = True
    # Recompute activations in backward: less GPU memory, about 30% more time.
    gradient_checkpointing: bool = True

    # --- optimisation ------------------------------------------------------------------------
    # Optimizer steps to train (one step = batch x grad accumulation samples per device).
    max_steps: int = 500
    learning_rate: float = 2e-4
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 4
    per_device_eval_batch_size: int = 4
    warmup_steps: int = 5
    lr_scheduler_type: str = "linear"
    weight_decay: float = 0.001
    max_grad_norm: float = 1.0
    # "auto" = adamw_8bit on the Unsloth backend, adamw_torch elsewhere.
    optim: str = "auto"
    seed: int = 3407

    # --- data --------------------------------------------------------------------------------
    # Hub dataset id, a local path (folder of images + metadata.jsonl/csv, or parquet files),
    # or "synthetic:well-log-headers" (rendered offline).
    dataset_name: str = "wrath/well-log-headers-ocr"
    image_column: str = "image"
    text_column: str = "text"
    train_split: str = "train"
    # Split to evaluate on; "auto" = validation, else test, else 5% held out of train.
    eval_split: str = "auto"
    # Samples used from each split; -1 = all.
    train_subset: int = -1
    eval_subset: int = -1
    # The user turn that precedes every image.
    instruction: str = "Transcribe this well log header exactly."
    # Upper bound on the pixels of each image fed to the vision tower, in training and evaluation
    # (resized to fit, aspect ratio kept; Qwen3-VL makes one image token of each 32 x 32 pixels, so
    # fewer pixels = fewer tokens = less GPU memory). Default 1280 tokens' worth, 1.3 MP (a scanned
    # header keeps its typed text legible at that size), which preflight's memory estimate assumes.
    # -1 = the processor's own bound: 16.7 MP for Qwen3-VL, up to 16384 image tokens per image, which
    # the estimate then assumes too (a large scan fits no 24 GB card at batch 2).
    image_max_pixels: int = 1280 * 32 * 32
    # Processes preparing batches beside training (decoding, resizing, tokenizing); -1 = 4 on a GPU
    # machine, 0 (in the training process) on CPU, where they would compete for the same cores.
    dataloader_workers: int = -1
    # Bad samples (image missing or unreadable, transcription empty or over max_target_tokens) are
    # skipped at load, each named in the log; more than this share of a split bad stops the run
    # before training (exit 2). 0 = any bad sample stops it.
    max_bad_sample_fraction: float = 0.05
    # Longest transcription trained on, in tokens; longer ones are skipped as bad. -1 = no limit.
    max_target_tokens: int = 1024
    # Tokens generated per sample when evaluating CER/WER, at most; preflight warns when sampled
    # transcriptions are longer (they would be cut, and the cut counted as errors).
    max_new_tokens: int = 256
    # Where each transcription scored against its reference stops (at each evaluation and in
    # evaluate.py): -1 = auto, ceil(1.25 x the longest reference among the transcribed samples, in
    # tokens with the end of turn) + 8, at most max_new_tokens; else a token count <= max_new_tokens.
    # A trained model ends its transcriptions well within it, so only a young model's runaway output
    # is cut (and counted as errors, as a cut at max_new_tokens would be).
    eval_max_new_tokens: int = -1
    # Eval samples transcribed at each evaluation for CER/WER (greedy decoding, the slow part of
    # an evaluation); -1 = every eval sample, 0 = no CER/WER, eval_loss only.
    eval_generate_samples: int = 64
    # Images transcribed at once at each evaluation (under torchrun each rank transcribes its share);
    # -1 = 16 on a GPU, 64 on CPU. A batch ends as soon as its last sequence has, so a larger one is
    # faster until its KV cache no longer fits in GPU memory; it changes no score.
    eval_generate_batch_size: int = -1
    # Highest-loss eval samples shown at each evaluation (W&B table and output_dir/worst_samples/).
    worst_samples: int = 5
    # Host memory, in MB per process (each torchrun rank holds its own share), for the eval set
    # prepared once: each sample's pixel values and token ids, read and preprocessed at the first
    # evaluation and reused at every later one. Samples past it (the log says how many) are read
    # and preprocessed at every evaluation, as with 0 = keep nothing.
    eval_cache_mb: int = 4096

    # --- tracking and outputs ----------------------------------------------------------------
    wandb_project: str = "well-log-ocr"
    report_to_wandb: bool = True
    # "" = the current git branch (or "local" outside a git checkout).
    experiment_name: str = ""
    # "" = <VOLUME_PATH or ./outputs>/checkpoints/<experiment_name>. With VOLUME_PATH set (a pod), a
    # relative path is taken under VOLUME_PATH, and a path inside the pod's clone is refused.
    output_dir: str = ""
    # Steps between log lines, evaluations and checkpoints.
    logging_steps: int = 10
    eval_steps: int = 50
    save_steps: int = 50

    # --- checkpoints, stopping, cost ---------------------------------------------------------
    # Checkpoints kept: the keep_best lowest eval_loss and the keep_recent newest (0 = none of that
    # kind); the newest is always kept. A checkpoint has an eval_loss only when it was saved at an
    # evaluation step, so make save_steps a multiple of eval_steps.
    keep_best: int = 5
    keep_recent: int = 5
    # Also save when this many minutes passed since the last checkpoint (0 = only every save_steps):
    # bounds the work a SIGKILL can take, whatever the step time.
    save_every_minutes: float = 20.0
    # Evaluations without eval_loss improving by more than early_stopping_min_delta before
    # stopping; 0 = never stop early.
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.0
    # USD for the whole run, across resumes; 0 = no cap. A warning (and W&B alert) at 90%.
    budget_cap: float = 10.0
    # At budget_cap: "stop" (save a checkpoint, exit 3) or "warn" (log it and train on).
    budget_action: str = "stop"
    # USD per GPU-hour; -1 = GPU_HOURLY_RATE, else the detected GPU's price in training/cost.py's table
    # (spot or on-demand by POD_PRICING). A GPU with no rate at all fails preflight when budget_cap > 0.
    gpu_hourly_rate: float = -1.0

    # --- publishing (python -m training.experiment publish|pull) --------------------------------
    # At the end of a finished run, rank 0 uploads final/ (adapter, processor, training_config.json,
    # test scores) with a model card to hub_model_id, using HF_TOKEN (it needs write access). A
    # failed upload is logged with the command that retries it; the run still exits 0.
    push_to_hub: bool = False
    # The Hub repository, "ORG/NAME"; "{experiment_name}" is replaced by the experiment's name, so a
    # parent config can give every branch its own repo ("oilco/{experiment_name}"). "" = none.
    hub_model_id: str = ""
    # Create the repository private (only when it does not exist yet; an existing one keeps its setting).
    hub_private: bool = True
    # Test-split samples transcribed for the card's CER/WER/exact match before an end-of-run upload
    # (-1 = the whole split, 0 = none: the card then says the adapter was not scored).
    hub_test_samples: int = -1

    def __post_init__(self) -> None:
        problems = _type_problems(self) or _value_problems(self)
        if problems:
            raise ConfigError(problems)


def _type_problems(config: TrainingConfig) -> list[str]:
    problems = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        expected = FIELD_TYPES[f.name]
        ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            problems.append(f"{f.name}={value!r}: must be {_TYPE_WORDS[expected]}")
    return problems


def _value_problems(c: TrainingConfig) -> list[str]:
    problems: list[str] = []

    def need(ok: bool, name: str, rule: str) -> None:
        if not ok:
            problems.append(f"{name}={getattr(c, name)!r}: {rule}")

    for name in ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
                 "per_device_eval_batch_size", "r", "lora_alpha", "logging_steps", "eval_steps",
                 "save_steps", "max_new_tokens"):
        need(getattr(c, name) >= 1, name, "must be >= 1")
    for name in ("learning_rate",):
        need(math.isfinite(c.learning_rate) and c.learning_rate > 0, name, "must be > 0 (e.g. 2e-4)")
    for name in ("warmup_steps", "keep_best", "keep_recent", "early_stopping_patience", "worst_samples"):
        need(getattr(c, name) >= 0, name, "must be >= 0")
    for name in ("weight_decay", "max_grad_norm", "early_stopping_min_delta", "budget_cap", "save_every_minutes"):
        value = getattr(c, name)
        need(math.isfinite(value) and value >= 0, name, "must be a finite number >= 0")
    need(0 <= c.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
    for name in ("train_subset", "eval_subset"):
        need(getattr(c, name) == -1 or getattr(c, name) >= 1, name, "must be -1 (all) or >= 1")
    need(math.isfinite(c.max_bad_sample_fraction) and 0 <= c.max_bad_sample_fraction <= 1, "max_bad_sample_fraction",
         "must be a share between 0 and 1 (e.g. 0.05)")
    need(c.max_target_tokens == -1 or c.max_target_tokens >= 1, "max_target_tokens", "must be -1 (no limit) or >= 1")
    need(c.dataloader_workers >= -1, "dataloader_workers", "must be -1 (auto) or >= 0")
    need(c.eval_generate_batch_size == -1 or c.eval_generate_batch_size >= 1, "eval_generate_batch_size",
         "must be -1 (by device) or >= 1")
    need(c.eval_generate_samples >= -1, "eval_generate_samples", "must be -1 (all), 0 (none) or a count")
    need(c.eval_max_new_tokens == -1 or 1 <= c.eval_max_new_tokens <= c.max_new_tokens, "eval_max_new_tokens",
         f"must be -1 (auto, from the longest reference) or a token count from 1 to max_new_tokens={c.max_new_tokens}")
    need(c.eval_cache_mb >= 0, "eval_cache_mb", "must be >= 0 (MB of prepared eval samples per process; 0 = none)")
    need(c.budget_action in ("stop", "warn"), "budget_action", "must be 'stop' or 'warn'")
    need(c.image_max_pixels == -1 or c.image_max_pixels >= 1024, "image_max_pixels",
         "must be -1 (processor default) or >= 1024")
    need(c.gpu_hourly_rate == -1 or (math.isfinite(c.gpu_hourly_rate) and c.gpu_hourly_rate >= 0),
         "gpu_hourly_rate", "must be -1 (rate table) or a USD/hour >= 0")
    need(c.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}")
    need(c.optim in OPTIMIZERS, "optim", f"must be one of {', '.join(OPTIMIZERS)}")
    need(c.lr_scheduler_type in SCHEDULERS, "lr_scheduler_type", f"must be one of {', '.join(SCHEDULERS)}")
    for name in ("model_name", "dataset_name", "image_column", "text_column", "train_split",
                 "eval_split", "lora_target_modules", "instruction", "wandb_project"):
        need(getattr(c, name).strip() != "", name, "must not be empty")
    need(c.experiment_name == "" or bool(RUN_NAME_PATTERN.match(c.experiment_name)), "experiment_name",
         "must be '' (the git branch) or letters, digits, '.', '_', '-', '/' (at most 100)")
    need(c.eval_split != c.train_split, "eval_split", "must differ from train_split")
    need(c.hub_test_samples >= -1, "hub_test_samples", "must be -1 (the whole test split), 0 (none) or a count")
    need(c.hub_model_id == "" or bool(HUB_ID_PATTERN.match(c.hub_model_id)), "hub_model_id",
         "must be 'ORG/NAME' (letters, digits, '.', '_', '-'; '{experiment_name}' allowed), e.g. 'oilco/lr-1e4'")
    need(not c.push_to_hub or c.hub_model_id != "", "push_to_hub",
         "needs hub_model_id='ORG/NAME' (e.g. --set hub_model_id=oilco/{experiment_name})")
    return problems


FIELD_TYPES: dict[str, type] = {}
_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _collect_field_types() -> None:
    # Resolved once from the annotations (strings under `from __future__ import annotations`).
    names = {"bool": bool, "int": int, "float": float, "str": str}
    for f in dataclasses.fields(TrainingConfig):
        FIELD_TYPES[f.name] = names[f.type]


_collect_field_types()
