"""Benchmarks of the harness's own costs, printed as a markdown table.

    python benchmarks/run.py                    # every section, 3 repeats each (about 5 minutes)
    python benchmarks/run.py --only overhead,resume --repeats 5

Each figure is the median of --repeats runs; where a figure has a baseline, both are measured in
the same invocation, side by side, and the ratio is given. Everything runs the real train.py
main() in this process on the offline stand-in model (CPU), so interpreter start-up is left out
of both sides of every comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.table import markdown_table  # noqa: E402

QUICK_VAL = str(ROOT / "configs/experiments/quick_val.py")
GRACE_SECONDS = 5.0  # RunPod: SIGTERM, then SIGKILL 5 s later
NETWORK_VOLUME_MB_S = 50.0  # a conservative write speed for a network volume

# Qwen3-VL 2B (Qwen3-1.7B text tower + 24-block vision tower): (in, out) of every linear layer
# that Unsloth's default LoRA targets, per layer, and the layer counts.
TEXT_LINEARS = [(2048, 2048), (2048, 1024), (2048, 1024), (2048, 2048), (2048, 6144), (2048, 6144), (6144, 2048)]
TEXT_LAYERS = 28
VISION_LINEARS = [(1024, 3072), (1024, 1024), (1024, 4096), (4096, 1024)]
VISION_LAYERS = 24


@dataclass
class Row:
    measure: str
    value: str
    baseline: str = ""
    ratio: str = ""
    note: str = ""


class Records(logging.Handler):
    """Keeps the harness's log records, whose timestamps mark each step and each save."""

    def __init__(self):
        super().__init__()
        self.items: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.items.append(record)

    def step_times(self) -> dict[int, float]:
        times: dict[int, float] = {}
        for record in self.items:
            if record.msg.startswith("step %d/%d") and "loss " in str(record.args[2]):
                times.setdefault(record.args[0], record.created)
        return times

    def saves(self) -> list[tuple[float, float]]:
        return [(r.args[1], r.args[2]) for r in self.items if r.msg.startswith("checkpoint %s saved")]

    def optimizer_added(self) -> list[tuple[float, float]]:
        """(seconds since the save began, MB) of each optimizer state added after an urgent save."""
        return [(r.args[1], r.args[2]) for r in self.items if "optimizer state added" in r.msg]


def run_train(output_dir: str, *overrides: str, resume: bool = False, sigterm_at_step: int | None = None,
              expect: int = 0) -> tuple[float, Records]:
    """train.py's main() with `overrides`; returns its start time and its log records. With
    `sigterm_at_step`, this process sends itself SIGTERM once that step is logged, as RunPod would."""
    from training.train import main

    args = ["--config", QUICK_VAL, "--set", f"output_dir={output_dir}"]
    for override in overrides:
        args += ["--set", override]
    if resume:
        args += ["--resume", "auto"]
    records = Records()
    logger = logging.getLogger("training")
    logger.addHandler(records)
    started = time.time()
    watcher = None
    if sigterm_at_step is not None:
        watcher = threading.Thread(target=send_sigterm_at, args=(records, sigterm_at_step), daemon=True)
        watcher.start()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
    finally:
        logger.removeHandler(records)
        if watcher is not None:
            watcher.join()
    if code != expect:
        raise RuntimeError(f"train.py exited {code} (expected {expect}) for {overrides}")
    return started, records


def send_sigterm_at(records: Records, step: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while step not in records.step_times() and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(os.getpid(), signal.SIGTERM)  # handled by train.py's handler, in the main thread


def median(values) -> float:
    return statistics.median(values)


def bench_resume(repeats: int, steps: int = 40) -> list[Row]:
    """Start to first new step when resuming at step N, against start to step N from scratch."""
    fresh, resumed, step_seconds = [], [], []
    common = ("save_steps=1000", "eval_steps=1000", "logging_steps=1", "save_every_minutes=0",
              "report_to_wandb=false")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "run")
            started, records = run_train(out, f"max_steps={steps}", *common)
            times = records.step_times()
            fresh.append(times[steps] - started)
            step_seconds.append(median([times[s + 1] - times[s] for s in range(steps // 2, steps)]))
            started, records = run_train(out, f"max_steps={steps + 1}", *common, resume=True)
            resumed.append(records.step_times()[steps + 1] - started)
    fresh_s, resumed_s = median(fresh), median(resumed)
    return [
        Row(f"start -> first new step, resuming at step {steps}", f"{resumed_s:.2f} s",
            f"{fresh_s:.2f} s (start -> step {steps} from scratch)", f"{resumed_s / fresh_s:.3f}",
            f"one step alone takes {median(step_seconds):.3f} s; skipped samples are not decoded"),
    ]


def bench_checkpoint(repeats: int) -> list[Row]:
    """Save time and size of a stand-in checkpoint, and the same extrapolated to the real adapter:
    a regular save (everything, then published), and the save after SIGTERM, which publishes a
    resumable checkpoint first and adds the optimizer state after."""
    seconds, sizes = [], []
    urgent_resumable, urgent_resumable_mb, urgent_complete, urgent_optimizer_mb = [], [], [], []
    common = ("eval_steps=1000", "keep_best=0", "save_every_minutes=0", "report_to_wandb=false")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            _, records = run_train(os.path.join(tmp, "run"), "max_steps=6", "save_steps=1", "keep_recent=2", *common)
            for took, megabytes in records.saves():
                seconds.append(took)
                sizes.append(megabytes)
        with tempfile.TemporaryDirectory() as tmp:
            _, records = run_train(os.path.join(tmp, "run"), "max_steps=400", "save_steps=1000", *common,
                                   sigterm_at_step=3, expect=143)
            (took, megabytes), = records.saves()
            (added, optimizer_mb), = records.optimizer_added()
            urgent_resumable.append(took)
            urgent_resumable_mb.append(megabytes)
            urgent_complete.append(added)
            urgent_optimizer_mb.append(optimizer_mb)
    save_s, size_mb = median(seconds), median(sizes)
    resumable_s, resumable_mb = median(urgent_resumable), median(urgent_resumable_mb)
    complete_s, optimizer_mb = median(urgent_complete), median(urgent_optimizer_mb)
    disk_mb_s = median([write_speed() for _ in range(repeats)])
    hash_mb_s = median([hash_speed() for _ in range(repeats)])
    grace = f"{GRACE_SECONDS:.0f} s SIGTERM grace"
    rows = [Row("checkpoint save, stand-in (LoRA r=32 + lm_head, AdamW)", f"{save_s:.3f} s", grace,
                f"{save_s / GRACE_SECONDS:.3f}", f"{size_mb:.1f} MB; this disk writes {disk_mb_s:.0f} MB/s with fsync, "
                f"the manifest hashes {hash_mb_s:.0f} MB/s (sha256)"),
            Row("SIGTERM save, stand-in: resumable / optimizer state added", f"{resumable_s:.3f} / {complete_s:.3f} s",
                grace, f"{resumable_s / GRACE_SECONDS:.3f}", f"{resumable_mb:.1f} MB, then {optimizer_mb:.1f} MB")]
    params = r16_adapter_parameters()
    adapter_mb = params * 4 / 1e6  # fp32 adapter
    for optimizer, bytes_per_param in (("adamw_8bit", 2), ("adamw_torch", 8)):
        real_optimizer_mb = params * bytes_per_param / 1e6  # the optimizer's two moments
        real_mb = adapter_mb + real_optimizer_mb
        for where, speed in (("this disk", disk_mb_s), ("a 50 MB/s network volume", NETWORK_VOLUME_MB_S)):
            # the stand-in's save (fixed costs: files, fsyncs, manifest) plus the extra bytes, written and hashed
            took = save_s + (real_mb - size_mb) / speed + (real_mb - size_mb) / hash_mb_s
            rows.append(Row(f"checkpoint save, Qwen3-VL 2B r=16 + {optimizer} (extrapolated, {where})",
                            f"{took:.2f} s", grace, f"{took / GRACE_SECONDS:.3f}",
                            f"{real_mb:.0f} MB for {params / 1e6:.1f} M adapter parameters"))
        for where, speed in (("this disk", disk_mb_s), ("a 50 MB/s network volume", NETWORK_VOLUME_MB_S)):
            # Published with sizes only; the second half writes the optimizer state and hashes everything.
            resumable = resumable_s + (adapter_mb - resumable_mb) / speed
            complete = complete_s + (real_mb - resumable_mb - optimizer_mb) / speed + (real_mb - size_mb) / hash_mb_s
            rows.append(Row(f"SIGTERM save until resumable, Qwen3-VL 2B r=16 + {optimizer} (extrapolated, {where})",
                            f"{resumable:.2f} s", "2.5 s goal", f"{resumable / 2.5:.3f}",
                            f"{adapter_mb:.0f} MB adapter + state; the {real_optimizer_mb:.0f} MB optimizer state "
                            f"follows, complete at {complete:.2f} s"))
    return rows


def write_speed(megabytes: int = 256) -> float:
    """MB/s of a large sequential write and fsync in a temp dir: what a checkpoint save pays."""
    block = os.urandom(1 << 20)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "blob")
        began = time.monotonic()
        with open(path, "wb") as out:
            for _ in range(megabytes):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        return megabytes / (time.monotonic() - began)


def hash_speed(megabytes: int = 128) -> float:
    """MB/s of the manifest's sha256 over a file just written (in the page cache, as after a save)."""
    from training.checkpointing.checkpoints import file_sha256

    block = os.urandom(1 << 20)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "blob")
        with open(path, "wb") as out:
            for _ in range(megabytes):
                out.write(block)
        began = time.monotonic()
        file_sha256(path)
        return megabytes / (time.monotonic() - began)


def r16_adapter_parameters(rank: int = 16) -> int:
    text = sum(rank * (i + o) for i, o in TEXT_LINEARS) * TEXT_LAYERS
    vision = sum(rank * (i + o) for i, o in VISION_LINEARS) * VISION_LAYERS
    return text + vision


class LogTimes:
    """A bare TrainerCallback noting when each logged step happened (for the baseline)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _LogTimes(TrainerCallback):
            def __init__(self):
                self.times: dict[int, float] = {}

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    self.times.setdefault(state.global_step, time.time())

        return _LogTimes()


def bare_trainer_steps_per_second(overrides: tuple[str, ...], first: int, last: int) -> float:
    """The same model, data, collator and TrainingArguments through a plain transformers.Trainer:
    no harness callbacks, no atomic saves, no cost or tracking."""
    import transformers

    from configs.loader import load_config
    from training.data.collator import VisionChatCollator
    from training.data.sources import load_splits, whole_steps
    from training.model.loading import load_model
    from training.run_config import resolve
    from training.trainer.harness import training_arguments

    with tempfile.TemporaryDirectory() as tmp:
        config = resolve(load_config(QUICK_VAL, [*overrides, f"output_dir={tmp}"]))
        splits = load_splits(config)
        loaded = load_model(config, "transformers")
        clock = LogTimes()
        trainer = transformers.Trainer(
            model=loaded.model, args=training_arguments(config, "transformers", has_cuda=False),
            train_dataset=whole_steps(splits.train, config.per_device_train_batch_size * config.gradient_accumulation_steps),
            eval_dataset=splits.eval, data_collator=VisionChatCollator(loaded.processor, config.instruction),
            callbacks=[clock])
        trainer.remove_callback(transformers.PrinterCallback)
        transformers.utils.logging.set_verbosity_error()
        trainer.train()
        return (last - first) / (clock.times[last] - clock.times[first])


def bench_overhead(repeats: int, steps: int = 50, first: int = 10) -> list[Row]:
    """train.py against a bare Trainer loop, alternated run by run so both see the same machine."""
    overrides = (f"max_steps={steps}", "logging_steps=10", "eval_steps=1000", "save_steps=1000",
                 "save_every_minutes=0", "report_to_wandb=false")
    harness, bare = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            _, records = run_train(os.path.join(tmp, "run"), *overrides)
            times = records.step_times()
            harness.append((steps - first) / (times[steps] - times[first]))
        bare.append(bare_trainer_steps_per_second(overrides, first, steps))
    h, b = median(harness), median(bare)
    return [Row(f"training steps/s, train.py (steps {first}-{steps})", f"{h:.3f}",
                f"{b:.3f} (bare transformers.Trainer)", f"{h / b:.3f}",
                "goal >= 0.95; stand-in on CPU, 8 samples a step, logging every 10 steps")]


@contextlib.contextmanager
def evaluation_off():
    """train.py's Trainer built with eval_strategy "no": the same run, never evaluated (eval_steps
    above max_steps would still evaluate once, at the end)."""
    from training.trainer import harness as trainer

    build = trainer.training_arguments

    def without_evaluation(*args, **kwargs):
        arguments = build(*args, **kwargs)
        arguments.eval_strategy = "no"
        return arguments

    trainer.training_arguments = without_evaluation
    try:
        yield
    finally:
        trainer.training_arguments = build


def evaluation_seconds(records: Records) -> list[dict[str, float]]:
    """Each evaluation's parts, in seconds, from the harness's log records: "prepare" (reading and
    preprocessing the eval set, at the first evaluation), "loss" (the eval_loss pass) and
    "transcribe" (the transcriptions, scoring and worst samples)."""
    evaluations, current, began = [], {}, None
    for record in records.items:
        if record.msg.startswith("evaluating at step"):
            current, began = {"prepare": 0.0}, record.created
        elif began is None:
            continue
        elif record.msg.startswith("eval set: ") and "once" in record.msg:
            current["prepare"] = record.created - began
        elif record.msg.startswith("transcribing"):
            current["loss"] = record.created - began - current["prepare"]
            current["transcribing"] = record.created
        elif record.msg.startswith("step %d/%d") and "eval_loss" in str(record.args[2]) and "transcribing" in current:
            current["transcribe"] = record.created - current.pop("transcribing")
            evaluations.append(current)
            began = None
    return evaluations


def spread(values: list[float], digits: int = 2) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def bench_eval(repeats: int) -> list[Row]:
    """Wall time of a 100-step run evaluating every 50 steps (eval_loss over 200 samples, CER/WER
    from 64 greedy transcriptions) against the same run never evaluated: medians of `repeats` runs
    of each, alternating (with, without; then without, with; ...) after a warm-up run, and the
    spread of the ratios of each round. Every run renders its images afresh, as a new process would."""
    from training.data import sources

    common = ("max_steps=100", "save_steps=1000", "logging_steps=10", "save_every_minutes=0", "report_to_wandb=false",
              "eval_subset=200", "eval_generate_samples=64", "max_new_tokens=256", "eval_steps=50",
              "per_device_eval_batch_size=16")

    def timed(evaluate: bool) -> tuple[float, Records]:
        sources._render.cache_clear()
        with tempfile.TemporaryDirectory() as tmp, (contextlib.nullcontext() if evaluate else evaluation_off()):
            began = time.monotonic()
            _, records = run_train(os.path.join(tmp, "run"), *common)
            return time.monotonic() - began, records

    timed(False)  # warm-up: the first run in a process pays for imports the others share
    with_eval, without, first, later, inside, bounds = [], [], [], [], [], set()
    for repeat in range(repeats):
        for evaluate in ((True, False) if repeat % 2 == 0 else (False, True)):
            wall, records = timed(evaluate)
            (with_eval if evaluate else without).append(wall)
            if evaluate:
                evaluations = evaluation_seconds(records)
                first.append(evaluations[0])
                later += evaluations[1:]
                # the same ratio from inside each evaluated run: it does not see the other runs' load
                spent = sum(sum(e.values()) for e in evaluations)
                inside.append(wall / (wall - spent))
                bounds |= {r.args[2] for r in records.items if r.msg.startswith("transcribing")}
    w, wo = median(with_eval), median(without)
    ratios = [a / b for a, b in zip(with_eval, without)]

    def parts(evaluations: list[dict]) -> str:
        return (f"prepare {median([e['prepare'] for e in evaluations]):.2f} s, eval_loss pass "
                f"{median([e['loss'] for e in evaluations]):.2f} s, transcription {median([e['transcribe'] for e in evaluations]):.2f} s")

    return [Row("100-step run with evaluation every 50 steps", f"{w:.1f} s", f"{wo:.1f} s (never evaluated)",
                f"{w / wo:.3f}", f"goal <= 1.20; medians of {repeats} alternating runs each, round ratios "
                f"{spread(ratios, 3)}, runs {spread(with_eval, 1)} / {spread(without, 1)} s; inside each evaluated "
                f"run, its time over its time outside evaluations: {median(inside):.3f} ({spread(inside, 3)}); "
                "per evaluation, first: "
                f"{parts(first)}; second: {parts(later)}; eval_loss over 200 samples, CER/WER from 64 greedy "
                f"transcriptions of at most {'/'.join(str(b) for b in sorted(bounds))} tokens (eval_max_new_tokens auto, "
                f"max_new_tokens 256); stand-in on CPU, images rendered afresh in every run")]


def bench_data(repeats: int, samples: int = 160, batch: int = 8) -> list[Row]:
    """Samples/s through the synthetic dataset (rendering) and the collator, on one core."""
    import torch
    from transformers import AutoProcessor

    from training.data import sources
    from training.data.collator import VisionChatCollator
    from training.model.standin import standin_path

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        collator = VisionChatCollator(AutoProcessor.from_pretrained(standin_path()), "Transcribe this well log header exactly.")
        rates, render_rates = [], []
        for _ in range(repeats):
            sources._render.cache_clear()  # cold: every header rendered, as in a first epoch
            split = sources.SyntheticSplit("train", samples)
            began = time.perf_counter()
            items = [split[i] for i in range(samples)]
            rendered = time.perf_counter()
            for start in range(0, samples, batch):
                collator(items[start:start + batch])
            ended = time.perf_counter()
            rates.append(samples / (ended - began))
            render_rates.append(samples / (rendered - began))
    finally:
        torch.set_num_threads(threads)
    return [Row("data pipeline, samples/s on one core (render + collate)", f"{median(rates):.0f}", "", "",
                f"synthetic 640x320 headers, batches of {batch}; rendering alone {median(render_rates):.0f}/s")]


def bench_cli(repeats: int) -> list[Row]:
    """Wall time of the CLIs' --help: heavy imports (torch, transformers) must stay deferred."""
    def wall(*args: str) -> float:
        began = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, check=True)
        return time.perf_counter() - began

    runs = max(repeats, 5)
    bare = median([wall("-c", "pass") for _ in range(runs)])
    rows = []
    for name, args in (("train.py --help", ("training/train.py", "--help")),
                       ("python -m training.experiment --help", ("-m", "training.experiment", "--help")),
                       ("evaluate.py --help", ("training/evaluate.py", "--help"))):
        took = median([wall(*args) for _ in range(runs)])
        rows.append(Row(f"CLI start-up, {name}", f"{took * 1000:.0f} ms", f"{bare * 1000:.0f} ms (python -c pass)",
                        f"{took / bare:.1f}", f"median of {runs}"))
    return rows


def sweep_files(runs: int, steps: int = 500) -> dict[str, dict[str, bytes]]:
    """The small files of a sweep of `runs` 500-step runs, as train.py writes them (logging every 10
    steps, an evaluation every 50): run name -> file name -> bytes."""
    import dataclasses
    import json
    import math

    from configs.base import TrainingConfig

    sweep = {}
    for index in range(runs):
        name = f"sweep-lr{index:02d}"
        config = {**dataclasses.asdict(TrainingConfig()), "experiment_name": name, "learning_rate": 1e-4 * (index + 1)}
        events = []
        for step in range(10, steps + 1, 10):
            events.append({"step": step, "loss": 2.0 * math.exp(-step / 200) + 0.01 * index, "learning_rate": 2e-4,
                           "cost_usd": 0.0004 * step, "samples_per_second": 9.5})
            if step % 50 == 0:
                loss = 1.5 * math.exp(-step / 250) + 0.02 * index
                events.append({"step": step, "eval_loss": loss, "eval_cer": loss / 8, "eval_wer": loss / 4,
                               "eval_exact_match": 0.1})
        status = {"status": "finished", "exit_code": 0, "step": steps, "max_steps": steps, "cost_usd": 0.0004 * steps,
                  "updated_at": "2026-12-01T12:00:00Z"}
        sweep[name] = {"training_config.json": json.dumps(config).encode(), "run_status.json": json.dumps(status).encode(),
                       "metrics.jsonl": "".join(json.dumps(e) + "\n" for e in events).encode()}
    return sweep


def bench_volume(repeats: int, runs: int = 20) -> list[Row]:
    """`compare` of a 20-run sweep read from a network volume through its S3 API, against the same
    runs in a local directory; and pull and push throughput. The volume is moto's S3 server on
    127.0.0.1 behind RunPod's documented rules (tests/fake_volume.py) and RunPod's API the tests'
    fake, both in processes of their own: the figures are the harness's own cost per request, not
    RunPod's network."""
    sys.path.insert(0, str(ROOT / "tests"))
    import fake_volume
    from fake_runpod import API_KEY, FakeRunPod

    from training.experiment.__main__ import main as experiment

    rows: list[Row] = []
    server = fake_volume.start()
    saved = dict(os.environ)
    try:
        with FakeRunPod(max_requests=100_000, lifetime_s=3600) as api, tempfile.TemporaryDirectory() as tmp:
            os.environ.update(server.env(), RUNPOD_API_BASE_URL=api.url, RUNPOD_API_KEY=API_KEY)
            local = Path(tmp) / "checkpoints"
            client = server.client()
            for name, files in sweep_files(runs).items():
                (local / name).mkdir(parents=True)
                for file, data in files.items():
                    (local / name / file).write_bytes(data)
                    client.put_object(Bucket="vol-eu1", Key=f"checkpoints/{name}/{file}", Body=data)

            def compare(*args: str) -> float:
                began = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    code = experiment(["compare", *args])
                if code != 0:
                    raise RuntimeError(f"compare {args} exited {code}")
                return time.perf_counter() - began

            plot = os.path.join(tmp, "compare.png")
            compare("--outputs", str(local), "--plot", plot)  # warm-up: imports, matplotlib's font cache
            for label, extra in (("table (--markdown)", ("--markdown",)), ("table and --plot PNG", ("--plot", plot))):
                remote = median([compare("--volume-id", "vol-eu1", *extra) for _ in range(repeats)])
                here = median([compare("--outputs", str(local), *extra) for _ in range(repeats)])
                rows.append(Row(f"compare, {runs} runs on a network volume via its S3 API (local S3 server): {label}",
                                f"{remote:.2f} s", f"{here:.2f} s (the same runs in a local directory)",
                                f"{remote / here:.2f}", "3 small files per run (config, status, metrics), "
                                "8 reads in flight; includes the data center lookup and the key check"))
            rows += transfer_rows(repeats, server, local.parent)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
    return rows


def transfer_rows(repeats: int, server, scratch: Path) -> list[Row]:
    """data push of a 200-image dataset, and pull of a checkpoint-sized final/ (two files, 96 MB)."""
    from training.experiment.__main__ import main as experiment

    dataset = scratch / "images"
    for split, count in (("train", 180), ("validation", 20)):
        (dataset / split).mkdir(parents=True)
        for index in range(count):
            (dataset / split / f"{index:03d}.png").write_bytes(os.urandom(100_000))
        (dataset / split / "metadata.jsonl").write_text("".join(
            f'{{"file_name": "{index:03d}.png", "text": "WELL {index}"}}\n' for index in range(count)))
    pushed = sum(p.stat().st_size for p in dataset.rglob("*") if p.is_file())
    final = scratch / "final"
    final.mkdir()
    (final / "adapter_config.json").write_text("{}")
    (final / "adapter_model.safetensors").write_bytes(os.urandom(96 * 1024 * 1024))
    client = server.client()
    for file in final.iterdir():
        client.upload_file(str(file), "vol-eu1", f"checkpoints/big-run/final/{file.name}")
    pulled = sum(p.stat().st_size for p in final.iterdir())

    def timed(*args: str) -> float:
        began = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = experiment(list(args))
        if code != 0:
            raise RuntimeError(f"{args} exited {code}")
        return time.perf_counter() - began

    pushes, skips, pulls = [], [], []
    for repeat in range(repeats):
        pushes.append(timed("data", "push", str(dataset), "--volume-id", "vol-eu1", "--as", f"images-{repeat}"))
        skips.append(timed("data", "push", str(dataset), "--volume-id", "vol-eu1", "--as", f"images-{repeat}"))
        pulls.append(timed("pull", "big-run", "--volume-id", "vol-eu1", "--to", str(scratch / f"pulled-{repeat}")))
    push_s, skip_s, pull_s = median(pushes), median(skips), median(pulls)
    return [
        Row("data push, 202 files (200 images of 100 kB), local S3 server", f"{pushed / 1e6 / push_s:.1f} MB/s",
            f"{skip_s:.2f} s (the same push again: every file skipped)", "",
            f"{push_s:.2f} s for {pushed / 1e6:.1f} MB, {202 / push_s:.0f} files/s, 8 uploads in flight"),
        Row("pull final/ (96 MB adapter), local S3 server", f"{pulled / 1e6 / pull_s:.1f} MB/s", "", "",
            f"{pull_s:.2f} s, MD5 of every file checked against the volume's ETag"),
    ]


SECTIONS = {"overhead": bench_overhead, "resume": bench_resume, "checkpoint": bench_checkpoint, "eval": bench_eval,
            "data": bench_data, "cli": bench_cli, "volume": bench_volume}


def render(rows: list[Row]) -> str:
    return markdown_table(("measure", "value", "baseline", "ratio", "note"),
                          [(r.measure, r.value, r.baseline, r.ratio, r.note) for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is shown)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        print(f"error: --only {','.join(unknown)}: unknown section (have {', '.join(SECTIONS)})", file=sys.stderr)
        return 2
    os.environ.setdefault("WANDB_MODE", "disabled")
    rows: list[Row] = []
    began = time.monotonic()
    for name in chosen:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        rows += SECTIONS[name](args.repeats)
    print(render(rows))
    print(f"\n{args.repeats} repeats per figure, {time.monotonic() - began:.0f} s in all, {os.cpu_count()} CPU cores, "
          f"torch {__import__('torch').__version__}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
