"""A smoke run for a fresh GPU: every path a real run takes, small, in sequence, with a checklist.

    python -m training.pod.smoke                                   # the real model, on a GPU pod
    python -m training.pod.smoke --config configs/experiments/quick_val.py   # the stand-in, anywhere
    python -m training.experiment launch NAME --smoke          # the same on a rented pod

Paths, each through the CLI a user runs: train.py loads the model (4-bit on the Unsloth backend),
trains 4 steps, evaluates with generation and saves a checkpoint; a second run, resumed with a
higher max_steps, gets SIGTERM mid-run and must save and exit 143; `--resume auto` then finishes
it; evaluate.py scores the final adapter on 8 samples. The checklist gives each path's time and
peak GPU memory (nvidia-smi, the whole GPU). Exit codes: 0 every path passed, 1 one failed (the
ones after it are not run), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from training.errors import EXIT_FAILED, EXIT_OK, EXIT_USER_ERROR

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = "configs/experiments/qwen3_qlora_r16.py"
FIRST_STEPS, RESUMED_STEPS, EVALUATED = 4, 8, 8
# Small everywhere, every path still taken: an evaluation with generation and a checkpoint at
# step 4, a log line every step (the SIGTERM waits for one), no W&B run in the team's project.
OVERRIDES = ("train_subset=64", f"eval_subset={EVALUATED}", "eval_generate_samples=4", "worst_samples=2",
             "logging_steps=1", f"eval_steps={FIRST_STEPS}", f"save_steps={FIRST_STEPS}", "report_to_wandb=false")
PATH_TIMEOUT_S = 1200
_STEP_LINE = re.compile(r"\bstep (\d+)/(\d+)\b")


@dataclass
class Result:
    path: str
    ok: bool | None = None  # None: not run
    detail: str = ""
    seconds: float = 0.0
    peak_gpu_mib: float | None = None


@dataclass
class Finished:
    code: int
    output: str


class GpuMemory:
    """The highest memory.used nvidia-smi reports while a path runs (every process on the GPU,
    CUDA context included); None on a machine without nvidia-smi."""

    def __init__(self, every_s: float = 0.5):
        self.every_s, self.peak, self._stop = every_s, None, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> GpuMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        while True:
            try:
                answer = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                        capture_output=True, text=True, timeout=10)
                used = max(float(v) for v in answer.stdout.split()) if answer.returncode == 0 else None
            except (OSError, ValueError, subprocess.TimeoutExpired):
                used = None
            if used is None:
                return
            self.peak = used if self.peak is None else max(self.peak, used)
            if self._stop.wait(self.every_s):
                return


def run(args: list[str], stop_after_step: int | None = None) -> Finished:
    """`python <args>` from the repository root, its output echoed and kept; with `stop_after_step`,
    SIGTERM once a step beyond it is logged, as RunPod does to a spot pod."""
    process = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines, signalled = [], False
    timer = threading.Timer(PATH_TIMEOUT_S, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            print(f"    {line}", end="", flush=True)
            lines.append(line)
            step = _STEP_LINE.search(line)
            if stop_after_step is not None and not signalled and step and int(step.group(1)) > stop_after_step:
                process.send_signal(signal.SIGTERM)
                signalled = True
        code = process.wait()
    finally:
        timer.cancel()
    return Finished(code, "".join(lines))


def checkpoints(output_dir: Path) -> list[int]:
    """The steps of the complete checkpoints (verified as a resume would)."""
    from training.checkpointing.checkpoints import scan

    return [checkpoint.step for checkpoint in scan(str(output_dir))[0]]


def events(output_dir: Path) -> list[dict]:
    from training.metrics_log import METRICS_FILE, read_events

    return read_events(str(output_dir / METRICS_FILE))


def train_command(config: str, output_dir: Path, overrides: list[str], max_steps: int, resume: bool) -> list[str]:
    args = ["training/train.py", "--config", config]
    for override in [*OVERRIDES, *overrides, f"output_dir={output_dir}", f"max_steps={max_steps}"]:
        args += ["--set", override]
    return args + (["--resume", "auto"] if resume else [])


def check_first_run(done: Finished, output_dir: Path, four_bit: bool) -> tuple[bool, str]:
    weights = re.search(r"base weights (.+?), [\d,]+ trainable", done.output)
    weights = weights.group(1) if weights else "?"
    if done.code != 0:
        return False, f"train.py exited {done.code}"
    evaluated = [e for e in events(output_dir) if "eval_cer" in e]
    if FIRST_STEPS not in checkpoints(output_dir) or not evaluated:
        return False, f"no checkpoint-{FIRST_STEPS} or no eval_cer in metrics.jsonl"
    if four_bit and "4-bit" not in weights:
        return False, f"a 4-bit load was asked for, the base loaded as {weights}"
    return True, f"checkpoint-{FIRST_STEPS}, eval_cer {evaluated[-1]['eval_cer']:.3f}, base weights {weights}"


def check_sigterm(done: Finished, output_dir: Path, four_bit: bool) -> tuple[bool, str]:
    saved = [step for step in checkpoints(output_dir) if step > FIRST_STEPS]
    if done.code != 143:
        return False, f"train.py exited {done.code}, not 143"
    if not saved:
        return False, "no checkpoint saved on SIGTERM"
    return True, f"exit 143 with checkpoint-{saved[-1]}"


def check_resume(done: Finished, output_dir: Path, four_bit: bool) -> tuple[bool, str]:
    from training.run_status import read_status

    resumed = re.search(r"resuming from \S*?(checkpoint-\d+)", done.output)
    status = read_status(str(output_dir)) or {}
    if done.code != 0 or not resumed:
        return False, f"train.py exited {done.code}" + ("" if resumed else ", did not resume")
    if status.get("status") != "finished" or status.get("step") != RESUMED_STEPS or not (output_dir / "final").is_dir():
        return False, f"run_status {status.get('status')} at step {status.get('step')}, final/ missing?"
    return True, f"resumed from {resumed.group(1)}, finished at step {RESUMED_STEPS} with final/"


def check_evaluate(done: Finished, output_dir: Path, four_bit: bool) -> tuple[bool, str]:
    report_path = output_dir / "final" / "eval-test.json"
    if done.code != 0 or not report_path.exists():
        return False, f"evaluate.py exited {done.code}"
    report = json.loads(report_path.read_text())
    if report.get("samples") != EVALUATED or len(report.get("results", [])) != EVALUATED:
        return False, f"{report.get('samples')} samples scored, not {EVALUATED}"
    return True, f"CER {report['cer']:.3f}, WER {report['wer']:.3f} on {EVALUATED} test samples"


def smoke(config: str, output_dir: Path, overrides: list[str], four_bit: bool) -> list[Result]:
    """Run the paths in order, each checked on what it left on disk; stop at the first failure."""
    paths = [
        ("train: load, 4 steps, eval with generation, checkpoint",
         lambda: run(train_command(config, output_dir, overrides, FIRST_STEPS, resume=False)), check_first_run),
        ("SIGTERM mid-run: checkpoint, exit 143",
         lambda: run(train_command(config, output_dir, overrides, RESUMED_STEPS, resume=True),
                     stop_after_step=FIRST_STEPS), check_sigterm),
        ("--resume auto to the end",
         lambda: run(train_command(config, output_dir, overrides, RESUMED_STEPS, resume=True)), check_resume),
        (f"evaluate.py on {EVALUATED} samples",
         lambda: run(["training/evaluate.py", "--model", str(output_dir / "final"), "--limit", str(EVALUATED)]),
         check_evaluate),
    ]
    results = [Result(name) for name, _, _ in paths]
    for result, (name, start, check) in zip(results, paths):
        print(f"[smoke] {name}", flush=True)
        began = time.monotonic()
        with GpuMemory() as memory:
            done = start()
        result.seconds, result.peak_gpu_mib = time.monotonic() - began, memory.peak
        result.ok, result.detail = check(done, output_dir, four_bit)
        if not result.ok:
            break
    return results


def checklist(results: list[Result]) -> str:
    rows = [("path", "seconds", "peak GPU memory", "result")]
    for r in results:
        memory = "-" if r.peak_gpu_mib is None else f"{r.peak_gpu_mib / 1024:.1f} GiB"
        verdict = "not run" if r.ok is None else f"{'PASS' if r.ok else 'FAIL'}: {r.detail}"
        rows.append((r.path, f"{r.seconds:.1f}" if r.ok is not None else "-", memory if r.ok is not None else "-",
                     verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pod.smoke", description=__doc__.split("\n")[0],
                                     epilog="Exit codes: 0 every path passed, 1 one failed, 2 bad arguments.")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="experiment file (default: %(default)s)")
    parser.add_argument("--output", metavar="DIR", help="an empty or new directory for the runs (default: a temp dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="a config override for every run, after the smoke run's own")
    args = parser.parse_args(argv)

    from configs.base import ConfigError
    from configs.loader import load_config
    from training.console import report_problems
    from training.model.loading import UNSLOTH, choose_backend, prequantized

    try:  # a bad config or override fails here, once, instead of in the first path
        config = load_config(args.config, [*OVERRIDES, *args.overrides])
    except ConfigError as error:
        return report_problems(error.problems)
    backend, why_not = choose_backend(config)
    # What train.py will load: 4 bits only where the backend quantizes (the transformers backend
    # loads the stand-in in full precision); preflight, in the first path, refuses a mismatch.
    four_bit = (config.load_in_4bit and backend == UNSLOTH) or prequantized(config.model_name)
    output_dir = Path(args.output or tempfile.mkdtemp(prefix="smoke-")).resolve()
    if output_dir.exists() and any(output_dir.iterdir()):
        print(f"error: --output {output_dir}: not empty; give a new or empty directory", file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"[smoke] {args.config} into {output_dir}", flush=True)
    print(f"[smoke] backend {backend or why_not}, {'4-bit' if four_bit else 'full precision'}", flush=True)
    results = smoke(str(Path(args.config).resolve()), output_dir, args.overrides, four_bit)
    print(checklist(results))
    passed = all(r.ok for r in results)
    print(f"[smoke] {'every path passed' if passed else 'FAILED'}; the runs are in {output_dir}")
    return EXIT_OK if passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
