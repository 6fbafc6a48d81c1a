"""Train one experiment: config, preflight, lock, resume point, data, model, trainer, train, final save.

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

if __package__ in (None, ""):  # run as a script: the repository root in place of training/ (whose
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # packages would shadow runpod, secrets...)

from configs.base import ConfigError, TrainingConfig  # noqa: E402
from configs.loader import load_config  # noqa: E402
from training import distributed  # noqa: E402
from training.checkpointing.lifecycle import Lifecycle  # noqa: E402
from training.console import report_problems, setup_logging  # noqa: E402
from training.errors import (  # noqa: E402
    EXIT_BUDGET,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_USER_ERROR,
    UserError,
)
from training.git_cli import git_state  # noqa: E402
from training.outcome import Outcome  # noqa: E402
from training.run_config import resolve  # noqa: E402
from training.signals import Preempted, StopSignals  # noqa: E402

log = logging.getLogger("training")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="train.py", description="Fine-tune the OCR model on one experiment config.",
        epilog="Exit codes: 0 done, 2 bad config/preflight, 3 budget cap, 4 locked, 143 preempted.")
    parser.add_argument("--config", required=True, help="experiment file, e.g. configs/experiments/quick_val.py")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field (repeatable); fields are in configs/base.py")
    parser.add_argument("--resume", metavar="PATH|auto",
                        help="continue from a checkpoint dir, or 'auto' for the newest complete one "
                             "in output_dir (none: start fresh)")
    parser.add_argument("--preflight-only", action="store_true", help="run the preflight checks and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    signals = StopSignals(Outcome()).install()
    try:
        config = resolve(load_config(args.config, args.overrides))
        from training import preflight
        from training.checkpointing.resume import choose_checkpoint
        from training.checkpointing.run_lock import OutputDirLocked, RunLock
        from training.model.loading import choose_backend, cuda_available, prepare_backend
        from training.pod.supervisor import PREFLIGHT_PASSED_ENV

        distributed.init(cuda_available())
        backend, problem = choose_backend(config)
        if os.environ.get(PREFLIGHT_PASSED_ENV) == "1" and not args.preflight_only:
            # The pod's supervisor ran `--preflight-only` for this start a moment ago: once is enough.
            log.info("preflight passed (the supervisor's, for this pod start)")
        else:  # once for all ranks: its hub, W&B and git checks would otherwise run on every one
            distributed.decided_on_main(lambda: preflight.check_or_raise(config, backend, problem, args.config))
        if args.preflight_only:
            log.info("preflight passed")
            return EXIT_OK
        prepare_backend(backend)  # unsloth before transformers, peft and trl: the imports below bring them
        lifecycle = Lifecycle(config.output_dir, publish=lambda: hand_to_the_hub(config))
        choice = None
        if args.resume is None:
            lifecycle.refuse_to_start_over()
        elif args.resume != "auto":
            choice = choose_checkpoint(args.resume, config.output_dir)  # a bad path fails before anything is written
        lock, locked = RunLock(config.output_dir), None
        if distributed.is_main():
            try:
                lock.acquire()
            except OutputDirLocked as error:
                locked = str(error)
        locked = distributed.share(locked)
        if locked:
            print(f"error: {locked}", file=sys.stderr)
            return EXIT_LOCKED
        try:
            code = run(config, backend, args.resume, signals, lifecycle, choice)
            # torchrun tears every rank down at the first exit: leave together, bookkeeping done
            distributed.finish()
            if code == EXIT_OK:  # after the ranks parted: rank 0 may take minutes, and never fails the run
                lifecycle.publish()
            return code
        finally:
            lock.release()
    except (ConfigError, UserError) as error:
        return report_problems(error.problems)
    except Preempted as stop:
        log.info("%s before training started: nothing new to save", stop)
        return EXIT_PREEMPTED
    finally:
        signals.uninstall()


def run(config: TrainingConfig, backend: str, resume: str | None, signals: StopSignals, lifecycle,
        choice=None) -> int:
    """The recipe: resume point, cost, tracking, data, model, trainer, train, then how it ended."""
    from training.cost import BudgetSpent, gpu_info, open_meter
    from training.model.loading import load_model
    from training.run_config import write_config
    from training.runpod.prices import pod_rate
    from training.trainer.budget import BudgetCallback
    from training.trainer.early_stopping import EarlyStoppingCallback
    from training.trainer.preemption import StopAndSaveCallback
    from training.trainer.tracking import Tracker

    quiet_libraries()
    log.info("experiment %s -> %s (backend %s)", config.experiment_name, config.output_dir, backend)
    main_rank, outcome = distributed.is_main(), signals.outcome
    start = lifecycle.start(config, resume, choice, git_state)
    try:  # one read of RunPod's API for the whole run: rank 0 asks, every rank uses its answer
        meter = open_meter(config, pod=distributed.decided_on_main(pod_rate))
    except BudgetSpent as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BUDGET
    tracker = Tracker.start(config, start.state, backend, gpu_info()) if main_rank else None
    code = EXIT_USER_ERROR  # replaced below unless training raises
    try:  # from here on, whatever happens, the W&B run is finished and the ledger saved
        splits = load_data(config)
        loaded = load_model(config, backend)
        log_model(config, loaded)
        train_set, eval_set = screened_data(config, splits, loaded.processor.tokenizer, tracker)
        callbacks = [BudgetCallback(meter, config.budget_action, outcome, alert=tracker.alert if tracker else None),
                     StopAndSaveCallback(signals, config.save_every_minutes),
                     EarlyStoppingCallback(config, start.state, outcome)]
        trainer = build_trainer(config, backend, loaded, train_set, eval_set, start, meter, tracker, outcome, callbacks,
                                lifecycle)
        report = StatusReport(config, trainer, meter, start.state, tracker)
        if main_rank:
            write_config(config, config.output_dir)
        report("running")
        try:
            train_or_finish(trainer, start, config)
        except Preempted:  # before the first step: nothing to save, main() says so
            code = EXIT_PREEMPTED
            report("preempted", code)
            raise
        except BaseException:
            report("failed")
            raise
        ending = outcome.ending()
        if ending.writes_final:
            final = lifecycle.save_final(loaded.model, loaded.processor, lambda into: write_config(config, into)) \
                if main_rank else None
            distributed.barrier()
            log.info("final adapter in %s; %.2f USD spent", final, meter.ledger.total_usd())
        code = report.ended(ending, outcome.signal)
        return code
    finally:
        if main_rank:
            meter.ledger.save()
        if tracker:
            tracker.finish(code)


def quiet_libraries() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_data(config: TrainingConfig):
    """The splits, and the stand-in model built on first use: by rank 0 first, then the others."""
    from training.data.sources import load_splits
    from training.model.loading import model_source

    with distributed.main_first():
        splits = load_splits(config)
        model_source(config)
    return splits


def log_model(config: TrainingConfig, loaded) -> None:
    from training.model.loading import weight_format

    trainable = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    log.info("model: %s, base weights %s, %s trainable parameters", config.model_name,
             weight_format(loaded.model), f"{trainable:,}")


def screened_data(config: TrainingConfig, splits, tokenizer, tracker):
    """(train, eval) without the bad samples (named and counted), the train split cut to whole
    optimizer steps so that every epoch, and every resume, lands on the same samples."""
    from training.data.sources import screen_splits, whole_steps
    from training.metrics_log import METRICS_FILE, append_event

    # The token limit needs the model's tokenizer: screening comes after the model is loaded.
    splits = screen_splits(config, splits, lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    skipped = {f"data_skipped_{name}": count for name, count in splits.skipped.items()}
    if distributed.is_main() and any(skipped.values()):
        append_event(os.path.join(config.output_dir, METRICS_FILE), {"step": 0, **skipped})
        if tracker:
            tracker.log(skipped, step=0)
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps * distributed.world_size()
    train_set = whole_steps(splits.train, per_step)
    log.info("data: %s, %d train / %d eval samples (eval split: %s)%s", config.dataset_name, len(train_set),
             len(splits.eval), splits.eval_split,
             f"; {len(splits.train) - len(train_set)} left out so each epoch is whole steps of {per_step}"
             if len(train_set) < len(splits.train) else "")
    return train_set, splits.eval


def build_trainer(config, backend, loaded, train_set, eval_set, start, meter, tracker, outcome, callbacks, lifecycle):
    from training.data.collator import VisionChatCollator
    from training.data.prepared import MB, PreparedSplit
    from training.model.loading import cuda_available
    from training.trainer.harness import HarnessTrainer, training_arguments
    from training.trainer.progress import ProgressCallback
    from training.trainer.tracking import MetricsFileCallback, TrackingCallback

    # The stop callback applies the budget's decision: it must come after it (and before the writers).
    callbacks = [*callbacks, MetricsFileCallback(config.output_dir), ProgressCallback()]
    if tracker:
        callbacks.append(TrackingCallback(tracker))
    collator = VisionChatCollator(loaded.processor, config.instruction, config.image_max_pixels)
    return HarnessTrainer(
        model=loaded.model,
        args=training_arguments(config, backend, has_cuda=cuda_available()),
        train_dataset=train_set,
        eval_dataset=PreparedSplit(eval_set, collator, config.eval_cache_mb * MB),  # prepared at the first evaluation
        data_collator=collator,
        callbacks=callbacks,
        config=config,
        harness_state=start.state,
        backend=backend,
        apply_new_learning_rate=start.learning_rate_changed,
        cost_meter=meter,
        tracker=tracker,
        outcome=outcome,
        lifecycle=lifecycle,
    )


def train_or_finish(trainer, start, config: TrainingConfig) -> None:
    if start.checkpoint and start.state.step >= config.max_steps:
        # Killed between the last checkpoint and final/: nothing left to train (the Trainer would
        # take one step past max_steps), only the final save to redo.
        log.info("the checkpoint is at max_steps=%d: writing final/ from it", config.max_steps)
        trainer.load_checkpoint_weights(start.checkpoint)
    else:
        from training.pod.commands import mark_training_started

        mark_training_started()  # on a pod, the dead-man switch's idle clock starts now: model and data are loaded
        trainer.train(resume_from_checkpoint=start.checkpoint)


class StatusReport:
    """run_status.json as the run goes (rank 0 writes it), and the log line that ends the run."""

    def __init__(self, config: TrainingConfig, trainer, meter, state, tracker):
        self.config, self.trainer, self.meter, self.state, self.tracker = config, trainer, meter, state, tracker

    def __call__(self, status: str, exit_code: int | None = None) -> None:
        from training.run_status import write_status

        if not distributed.is_main():
            return
        state = self.state
        write_status(self.config.output_dir, status, exit_code=exit_code, step=self.trainer.state.global_step,
                     max_steps=self.config.max_steps, cost_usd=round(self.meter.ledger.total_usd(), 6),
                     best_eval_loss=state.best_eval_loss, experiment_name=self.config.experiment_name,
                     git_branch=state.git_branch, git_commit=state.git_commit,
                     wandb_url=self.tracker.url if self.tracker else None)

    def ended(self, ending, signal: str | None) -> int:
        self(ending.status, ending.exit_code)
        log.info("%s", ending.message(self.trainer.state.global_step, signal))
        return ending.exit_code


def hand_to_the_hub(config: TrainingConfig) -> None:
    """A finished run's final/, scored on the test split for its card, to the Hub (push_to_hub)."""
    from training.evaluation.evaluate import score_test_split
    from training.hub.publish import after_run

    after_run(config, score_test_split)


if __name__ == "__main__":
    sys.exit(main())
