"""Train one experiment: config, preflight, lock, resume point, data, model, trainer, train, final save.

    python training/train.py --config configs/experiments/quick_val.py
    python training/train.py --config configs/experiments/X.py --resume auto --set max_steps=800

Exit codes: 0 done (or stopped early), 2 bad config or failed preflight, 3 budget cap reached,
4 output directory locked by another trainer, 143 stopped by SIGTERM/SIGINT after a checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `configs` and `training` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from configs.base import ConfigError, TrainingConfig  # noqa: E402
from configs.loader import git_state, load_config, resolve  # noqa: E402
from training import distributed  # noqa: E402
from training.console import report_problems, setup_logging  # noqa: E402
from training.errors import (  # noqa: E402
    EXIT_BUDGET,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_USER_ERROR,
    UserError,
)
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
    signals = StopSignals().install()
    try:
        config = resolve(load_config(args.config, args.overrides))
        from training import preflight
        from training.modeling import cuda_available, prepare_backend
        from training.resume import choose_checkpoint
        from training.run_lock import OutputDirLocked, RunLock

        distributed.init(cuda_available())
        # Once for all ranks: its hub, W&B and git checks would otherwise run on every one.
        backend = distributed.decided_on_main(lambda: preflight.check_or_raise(config, config_path=args.config))
        if args.preflight_only:
            log.info("preflight passed")
            return EXIT_OK
        prepare_backend(backend)  # unsloth before transformers, peft and trl: the imports below bring them
        if args.resume is None:
            refuse_to_start_over(config.output_dir)
        elif args.resume != "auto":
            choose_checkpoint(args.resume, config.output_dir)  # a bad path fails before anything is written
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
            code = run(config, backend, args.resume, signals)
            # torchrun tears every rank down at the first exit: leave together, bookkeeping done
            distributed.finish()
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


def run(config: TrainingConfig, backend: str, resume: str | None, signals: StopSignals) -> int:
    from transformers.utils import logging as hf_logging

    from training import checkpoints
    from training.cost import BudgetCallback, CostLedger, CostMeter, budget_verdict, gpu_info, hourly_rate, pod_rate
    from training.data.collator import VisionChatCollator
    from training.data.sources import load_splits, whole_steps
    from training.modeling import cuda_available, load_model, model_source, weight_format
    from training.preemption import StopAndSaveCallback
    from training.progress import ProgressCallback
    from training.run_config import write_config
    from training.run_status import write_status
    from training.save import save_final
    from training.tracking import MetricsFileCallback, Tracker, TrackingCallback
    from training.trainer import HarnessTrainer, training_arguments

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    log.info("experiment %s -> %s (backend %s)", config.experiment_name, config.output_dir, backend)

    main_rank = distributed.is_main()
    if main_rank:
        promoted, leftovers = checkpoints.clear_staging(config.output_dir)
        for name in promoted:
            log.info("promoted %s/%s: its save completed, the copy it replaced was already gone",
                     checkpoints.STAGING_DIR, name)
        if leftovers:
            log.info("removed what interrupted saves left: %s", ", ".join(leftovers))
    distributed.barrier()
    checkpoint, state, learning_rate_changed = distributed.decided_on_main(lambda: resume_point(config, resume))

    gpu = gpu_info()
    try:
        # One read of RunPod's API for the whole run: rank 0 asks, every rank uses its answer.
        pod = distributed.decided_on_main(pod_rate)
        rate = hourly_rate(gpu[0], gpu[1], config.gpu_hourly_rate, os.environ.get("GPU_HOURLY_RATE"), pod=pod)
    except ValueError as error:
        raise UserError(str(error)) from None
    ledger = CostLedger(config.output_dir, rate)
    spent = ledger.previous_usd()
    log.info("cost: %.2f USD/h (%s); spent so far %.2f USD; budget_cap %s", rate.usd_per_hour, rate.source,
             spent, f"{config.budget_cap:.2f} USD ({config.budget_action})" if config.budget_cap else "none")
    if config.budget_action == "stop" and budget_verdict(spent, config.budget_cap, warned=True) == "stop":
        print(f"error: budget_cap={config.budget_cap}: already spent {spent:.2f} USD on this experiment; "
              "raise it (--set budget_cap=...) to continue", file=sys.stderr)
        return EXIT_BUDGET
    meter = CostMeter(ledger, rate, config.budget_cap)

    tracker = Tracker.start(config, state, backend, gpu) if main_rank else None
    with distributed.main_first():
        splits = load_splits(config)
        model_source(config)  # builds the stand-in on first use
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps * distributed.world_size()
    train_set = whole_steps(splits.train, per_step)
    log.info("data: %s, %d train / %d eval samples (eval split: %s)%s", config.dataset_name, len(train_set),
             len(splits.eval), splits.eval_split,
             f"; {len(splits.train) - len(train_set)} left out so each epoch is whole steps of {per_step}"
             if len(train_set) < len(splits.train) else "")

    loaded = load_model(config, backend)
    trainable = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    log.info("model: %s, base weights %s, %s trainable parameters", config.model_name,
             weight_format(loaded.model), f"{trainable:,}")

    budget = BudgetCallback(meter, config.budget_action, alert=tracker.alert if tracker else None)
    callbacks = [budget, StopAndSaveCallback(signals, budget, config.save_every_minutes),
                 MetricsFileCallback(config.output_dir), ProgressCallback()]
    if tracker:
        callbacks.append(TrackingCallback(tracker))
    trainer = HarnessTrainer(
        model=loaded.model,
        args=training_arguments(config, backend, has_cuda=cuda_available()),
        train_dataset=train_set,
        eval_dataset=splits.eval,
        data_collator=VisionChatCollator(loaded.processor, config.instruction, config.image_max_pixels),
        callbacks=callbacks,
        config=config,
        harness_state=state,
        backend=backend,
        apply_new_learning_rate=learning_rate_changed,
        cost_meter=meter,
        tracker=tracker,
        stop_requested=lambda: signals.requested,
    )

    def status(name: str, exit_code: int | None = None) -> None:
        if not main_rank:
            return
        write_status(config.output_dir, name, exit_code=exit_code, step=trainer.state.global_step,
                     max_steps=config.max_steps, cost_usd=round(ledger.total_usd(), 6),
                     best_eval_loss=state.best_eval_loss, experiment_name=config.experiment_name,
                     git_branch=state.git_branch, git_commit=state.git_commit,
                     wandb_url=tracker.url if tracker else None)

    if main_rank:
        write_config(config, config.output_dir)
    status("running")
    code = EXIT_USER_ERROR  # replaced below unless training raises
    try:
        try:
            if checkpoint and state.step >= config.max_steps:
                # Killed between the last checkpoint and final/: nothing left to train (the Trainer
                # would take one step past max_steps), only the final save to redo.
                log.info("the checkpoint is at max_steps=%d: writing final/ from it", config.max_steps)
                trainer.load_checkpoint_weights(checkpoint)
            else:
                trainer.train(resume_from_checkpoint=checkpoint)
        except Preempted:
            code = EXIT_PREEMPTED
            status("preempted", code)
            raise
        except BaseException:
            status("failed")
            raise
        step = trainer.state.global_step
        if signals.requested:
            code = EXIT_PREEMPTED
            log.info("stopped by %s at step %d: checkpoint saved; rerun with --resume auto to continue",
                     signals.requested, step)
            status("preempted", code)
            return code
        if budget.stopped:
            code = EXIT_BUDGET
            log.info("stopped by budget_cap at step %d: checkpoint saved; raise budget_cap and rerun with "
                     "--resume auto to continue", step)
            status("budget_stopped", code)
            return code
        final = save_final(loaded.model, loaded.processor, config, config.output_dir) if main_rank else None
        distributed.barrier()
        code = EXIT_OK
        status("early_stopped" if trainer.stopped_early else "finished", code)
        log.info("done at step %d: final adapter in %s; %.2f USD spent", step, final, ledger.total_usd())
        return code
    finally:
        if main_rank:
            ledger.save()
        if tracker:
            tracker.finish(code)


def refuse_to_start_over(output_dir: str) -> None:
    """A fresh run must not mix into an earlier run's checkpoints, metrics and cost."""
    from training import checkpoints
    from training.save import FINAL_DIR

    complete, _ = checkpoints.scan(output_dir)
    found = [os.path.basename(c.path) for c in complete[-1:]]
    if os.path.isdir(os.path.join(output_dir, FINAL_DIR)):
        found.append(f"{FINAL_DIR}/")
    if found:
        raise UserError(f"output_dir={output_dir!r} already holds a run ({', '.join(found)}): continue it with "
                        "--resume auto, or start another with --set output_dir=... (or delete it)")


def set_aside_abandoned_line(output_dir: str, step: int) -> None:
    """A fork (`--resume PATH` to an older checkpoint): the old line's newer checkpoints and its
    final/ go to output_dir/abandoned/, kept but out of reach of `--resume auto` and retention."""
    import time

    from training import checkpoints
    from training.resume import abandoned_by_fork
    from training.save import FINAL_DIR

    complete, rejected = checkpoints.scan(output_dir)
    steps = abandoned_by_fork(step, [c.step for c in complete] + [checkpoints.step_of(p) for p, _ in rejected])
    names = [checkpoints.checkpoint_name(s) for s in steps]
    if names and os.path.isdir(os.path.join(output_dir, FINAL_DIR)):
        names.append(FINAL_DIR)
    if names:
        label = f"after-step-{step}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        aside = checkpoints.set_aside(output_dir, names, label)
        log.info("forking at step %d: the abandoned line moved aside (kept, not deleted): %s -> %s",
                 step, ", ".join(names), aside)


def resume_point(config: TrainingConfig, resume: str | None):
    """The checkpoint to continue from (None: fresh), the harness state to continue with, and
    whether learning_rate differs from the checkpoint's."""
    from training.resume import choose_checkpoint, config_changes
    from training.state import HarnessState, fingerprint

    choice = choose_checkpoint(resume, config.output_dir)
    for path, why in choice.skipped:
        log.warning("skipping %s: %s", path, why)
    current = dataclasses.asdict(config)
    if choice.path is None:
        if resume == "auto":
            log.info("no complete checkpoint in %s: starting fresh", config.output_dir)
        state = HarnessState()
    else:
        state = HarnessState.load(choice.path)
        refusals, warnings = config_changes(state.config, current)
        if refusals:
            raise UserError(*[f"--resume {choice.path}: {r}" for r in refusals])
        for change in warnings:
            log.warning("config changed since the checkpoint: %s", change)
        if resume != "auto":
            set_aside_abandoned_line(config.output_dir, state.step)
        log.info("resuming from %s (step %d)", choice.path, state.step)
    learning_rate_changed = choice.path is not None and state.config.get("learning_rate") != config.learning_rate
    state.config, state.config_fingerprint = current, fingerprint(current)
    for key, value in git_state().items():
        setattr(state, key, value)
    return choice.path, state, learning_rate_changed


if __name__ == "__main__":
    sys.exit(main())
