"""Train one experiment: config, preflight, data, model, trainer, train, final save.

    python training/train.py --config configs/experiments/quick_val.py
    python training/train.py --config configs/experiments/X.py --resume auto --set max_steps=800

Exit codes: 0 done (or stopped early), 2 bad config or failed preflight, 3 budget cap reached,
4 output directory locked by another trainer, 143 stopped by SIGTERM/SIGINT after a checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `configs` and `training` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from configs.base import ConfigError  # noqa: E402
from configs.loader import load_config, resolve  # noqa: E402
from training.errors import EXIT_OK, EXIT_USER_ERROR, UserError  # noqa: E402

log = logging.getLogger("training")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="train.py", description="Fine-tune the OCR model on one experiment config.",
        epilog="Exit codes: 0 done, 2 bad config/preflight, 3 budget cap, 4 locked, 143 preempted.")
    parser.add_argument("--config", required=True, help="experiment file, e.g. configs/experiments/quick_val.py")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field (repeatable); fields are in configs/base.py")
    parser.add_argument("--resume", metavar="PATH|auto",
                        help="continue from a checkpoint dir, or 'auto' for the newest complete one")
    parser.add_argument("--preflight-only", action="store_true", help="run the preflight checks and exit")
    return parser.parse_args(argv)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stdout, force=True)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def report_problems(problems: list[str]) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_USER_ERROR


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        config = resolve(load_config(args.config, args.overrides))
        from training import preflight

        backend = preflight.check_or_raise(config, config_path=args.config)
        if args.preflight_only:
            log.info("preflight passed")
            return EXIT_OK
        return run(config, backend)
    except (ConfigError, UserError) as error:
        return report_problems(error.problems)


def run(config, backend: str) -> int:
    from transformers.utils import logging as hf_logging

    from training.data.collator import VisionChatCollator
    from training.data.sources import load_splits
    from training.inference import write_config
    from training.metrics_log import MetricsFileCallback
    from training.modeling import load_model
    from training.progress import ProgressCallback
    from training.run_status import write_status
    from training.save import save_final
    from training.trainer import HarnessTrainer, training_arguments

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    log.info("experiment %s -> %s (backend %s)", config.experiment_name, config.output_dir, backend)

    splits = load_splits(config)
    log.info("data: %s, %d train / %d eval samples (eval split: %s)", config.dataset_name,
             len(splits.train), len(splits.eval), splits.eval_split)

    loaded = load_model(config, backend)
    trainable = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    log.info("model: %s, %s trainable parameters", config.model_name, f"{trainable:,}")

    collator = VisionChatCollator(loaded.processor, config.instruction, config.image_max_pixels)
    trainer = HarnessTrainer(
        model=loaded.model,
        args=training_arguments(config, backend, has_cuda=backend_has_cuda()),
        train_dataset=splits.train,
        eval_dataset=splits.eval,
        data_collator=collator,
        callbacks=[MetricsFileCallback(config.output_dir), ProgressCallback()],
    )
    os.makedirs(config.output_dir, exist_ok=True)
    write_config(config, config.output_dir)
    write_status(config.output_dir, "running", step=0, max_steps=config.max_steps)
    try:
        trainer.train()
        final = save_final(loaded.model, loaded.processor, config, config.output_dir)
    except BaseException:
        write_status(config.output_dir, "failed", step=trainer.state.global_step, max_steps=config.max_steps)
        raise
    write_status(config.output_dir, "finished", exit_code=EXIT_OK, step=trainer.state.global_step,
                 max_steps=config.max_steps)
    log.info("done: final adapter in %s", final)
    return EXIT_OK


def backend_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
