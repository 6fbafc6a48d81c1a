"""Score a trained adapter: CER, WER and exact match on a split of the configured dataset.

    python training/evaluate.py --model outputs/checkpoints/my-exp/final
    python training/evaluate.py --model outputs/checkpoints/my-exp/checkpoint-300 --split validation --limit 100
    python training/evaluate.py --model oilco/my-exp     # published on the Hub (HF_TOKEN if private)

The config comes from the adapter's directory (what it was trained with) unless --config names
another. Prints a table and writes the scores and every transcription as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time

from configs.base import ConfigError
from configs.loader import load_config
from training.errors import EXIT_OK, UserError
from training.table import markdown_table

log = logging.getLogger("training")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="evaluate.py", description="CER/WER/exact match of a trained adapter.")
    parser.add_argument("--model", required=True,
                        help="output_dir/final, a checkpoint-<step> directory, or a published adapter ORG/NAME")
    parser.add_argument("--config", help="experiment file to take the dataset from (default: the adapter's own)")
    parser.add_argument("--split", default="test", help="dataset split to score (default: test)")
    parser.add_argument("--limit", type=int, default=-1, help="score only the first N samples (-1 = all)")
    parser.add_argument("--batch-size", type=int, default=8, help="samples decoded at once")
    parser.add_argument("--output", help="JSON file to write (default: <model>/eval-<split>.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from training.console import report_problems, setup_logging

    setup_logging()
    try:
        return evaluate(args)
    except (ConfigError, UserError) as error:
        return report_problems(error.problems)


def evaluate(args: argparse.Namespace) -> int:
    from training.model.inference import load_trained
    from training.run_config import saved_config

    if args.limit == 0 or args.limit < -1 or args.batch_size < 1:
        raise UserError("--limit must be -1 or >= 1 and --batch-size >= 1")
    model_dir, hub_id = locate_model(args.model)
    config = load_config(args.config) if args.config else saved_config(model_dir)
    if config is None:
        raise UserError(f"--model {args.model}: no training_config.json or harness_state.json to read the "
                        "config from; pass --config configs/experiments/<name>.py")
    if hub_id:
        config = on_adapter_base(config, model_dir)

    from training.model.loading import cuda_available, prepare_backend, select_backend, unsloth_installed

    backend = select_backend(config, cuda_available(), unsloth_installed())
    prepare_backend(backend)  # unsloth before transformers, peft and trl: the imports below bring them

    from transformers.utils import logging as hf_logging

    from training.data.batch_reading import read_batch
    from training.data.collator import VisionChatCollator
    from training.data.sources import load_split, take
    from training.evaluation.generation import generation_bound, longest_reference
    from training.evaluation.scoring import evaluate_samples

    hf_logging.set_verbosity_error()
    split = take(load_split(config, args.split), args.limit)
    loaded = load_trained(model_dir, config, backend)
    collator = VisionChatCollator(loaded.processor, config.instruction, config.image_max_pixels)
    log.info("scoring %s on %d %s samples of %s (backend %s)", model_dir, len(split), args.split,
             config.dataset_name, backend)
    started = time.monotonic()
    samples = read_batch(split.__getitem__, range(len(split)))
    bound = generation_bound(config.eval_max_new_tokens, config.max_new_tokens,
                             longest_reference(collator, [s["text"] for s in samples]))
    metrics, results = evaluate_samples(loaded.model, collator, samples, bound, args.batch_size)
    seconds = time.monotonic() - started

    print(render_table(hub_id or model_dir, args.split, len(samples), metrics, seconds))
    # A downloaded repository is the Hub cache's: its report goes to the working directory.
    default = f"eval-{hub_id.replace('/', '--')}-{args.split}.json" if hub_id else \
        os.path.join(model_dir, f"eval-{args.split}.json")
    output = args.output or default
    report = {"model": hub_id or model_dir, "split": args.split, "dataset": config.dataset_name, "samples": len(samples),
              "seconds": round(seconds, 2), **metrics, "results": [dataclasses.asdict(r) for r in results]}
    with open(output, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=2)
    log.info("wrote %s", output)
    return EXIT_OK


def score_test_split(final_dir: str, limit: int) -> None:
    """final/eval-test.json, written by evaluate.py's own scoring; a missing test split or any
    other failure only leaves the card unscored."""
    from training.redaction import redact_secrets

    args = parse_args(["--model", final_dir, "--split", "test", "--limit", str(limit)])
    try:
        evaluate(args)
    except Exception as error:  # noqa: BLE001  (an unscored card is still worth publishing)
        reason = "; ".join(getattr(error, "problems", [])) or f"{type(error).__name__}: {error}"
        log.warning("the card will have no test scores: %s", redact_secrets(reason))


def locate_model(name: str) -> tuple[str, str | None]:
    """(directory, Hub id or None): a local adapter directory, or a published one downloaded."""
    from configs.layout import HUB_ID_PATTERN
    from training.hub.access import is_local_path

    if os.path.isdir(name):
        return os.path.abspath(name), None
    if is_local_path(name) or not HUB_ID_PATTERN.match(name) or "{" in name:
        raise UserError(f"--model {name}: no such directory, nor a Hub repository id ORG/NAME")
    from training.hub.download import download

    return download(name), name


def on_adapter_base(config, model_dir: str):
    """The config with the base model a published adapter's adapter_config.json names (a Hub id);
    an adapter of the offline stand-in keeps it, as the stand-in is built locally, not downloaded."""
    from training.hub.access import is_local_path
    from training.model.standin import is_standin

    try:
        with open(os.path.join(model_dir, "adapter_config.json"), encoding="utf-8") as source:
            base = json.load(source).get("base_model_name_or_path") or ""
    except (OSError, ValueError):
        return config
    # Hub ids are case-insensitive, and Unsloth records its base in lower case.
    if is_standin(config.model_name) or not base or is_local_path(base) or base.lower() == config.model_name.lower():
        return config
    log.info("base model %s, as the adapter's config names it", base)
    return dataclasses.replace(config, model_name=base)


def render_table(model_dir: str, split: str, count: int, metrics: dict, seconds: float) -> str:
    rows = [("model", model_dir), ("split", f"{split} ({count} samples)"),
            ("CER", f"{metrics['cer']:.4f}"), ("WER", f"{metrics['wer']:.4f}"),
            ("exact match", f"{metrics['exact_match']:.2%}"), ("time", f"{seconds:.1f} s")]
    return markdown_table(("metric", "value"), rows)
