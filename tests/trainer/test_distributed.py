"""torchrun with 2 CPU ranks (gloo): one voice for files and W&B, coordinated stops, resume.

Under torchrun the launcher's own exit code is 1 whenever a rank exits non-zero (143, 3), so the
outcome is read from run_status.json, as scripts/setup_pod.sh does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from conftest import start_training, wait_for
from training.checkpointing import checkpoints
from training.data.sources import SyntheticSplit
from training.evaluation.scoring import scores
from training.metrics_log import read_events
from training.run_status import read_status

RUN = ("max_steps=8", "save_steps=2", "eval_steps=4", "keep_recent=2", "keep_best=1", "logging_steps=1",
       "eval_generate_samples=2", "max_new_tokens=16", "save_every_minutes=0")


def torchrun(output_dir, *extra: str, resume: bool = False, env: dict | None = None) -> subprocess.Popen:
    return start_training(output_dir, RUN + extra, ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
                          resume=resume, env=env)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=400)
    return output


def losses(output_dir) -> dict[int, list[float]]:
    seen: dict[int, list[float]] = {}
    for event in read_events(os.path.join(output_dir, "metrics.jsonl")):
        if "loss" in event:
            seen.setdefault(event["step"], []).append(event["loss"])
    return seen


def rank_pid(launcher: subprocess.Popen, rank: int) -> int:
    children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
    for pid in children:
        with open(f"/proc/{pid}/environ", "rb") as source:
            if f"RANK={rank}".encode() in source.read().split(b"\0"):
                return int(pid)
    raise LookupError(f"no rank {rank} under {launcher.pid}")


@pytest.fixture(scope="module")
def reference(module_mktemp):
    out = module_mktemp("ddp-reference") / "run"
    process = torchrun(out)
    output = finish(process)
    assert process.returncode == 0, output
    (out.parent / "torchrun.log").write_text(output)
    return out


def eval_metrics(output_dir) -> dict[int, list[dict]]:
    seen: dict[int, list[dict]] = {}
    for event in read_events(os.path.join(output_dir, "metrics.jsonl")):
        if "eval_loss" in event:
            seen.setdefault(event["step"], []).append(
                {k: event[k] for k in ("eval_loss", "eval_cer", "eval_wer", "eval_exact_match")})
    return seen


def test_two_ranks_write_once_and_save_every_ranks_state(reference):
    steps = [e["step"] for e in read_events(str(reference / "metrics.jsonl")) if "loss" in e]
    assert steps == list(range(1, 9)), "rank 0 alone writes metrics.jsonl"
    newest = checkpoints.scan(str(reference))[0][-1]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(newest.path))
    assert read_status(str(reference))["status"] == "finished"
    assert len(os.listdir(reference / "worst_samples")) == 2 * (1 + 2)  # 2 evaluations, one writer
    # each rank transcribed one of the 2 samples; rank 0 gathered both
    worst = [json.loads(line) for line in (reference / "worst_samples" / "step-4.jsonl").read_text().splitlines()]
    assert sorted(w["key"] for w in worst) == sorted(SyntheticSplit("validation", 2)[i]["key"] for i in range(2))
    evaluated = [e for e in read_events(str(reference / "metrics.jsonl")) if "eval_cer" in e and e["step"] == 4]
    assert evaluated[0]["eval_cer"] == scores([w["target"] for w in worst], [w["prediction"] for w in worst])["cer"]
    # each rank prepares what it reads: rank 0 (the one that logs) its eval_loss batch of 4 of the 8
    # eval samples, which holds its transcription (sample 0)
    assert "eval set: 4 samples read and preprocessed once" in (reference.parent / "torchrun.log").read_text()


def test_two_ranks_killed_then_resume_auto_finishes_like_an_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "run"
    process = torchrun(out)
    assert wait_for(lambda: os.path.isdir(out / "checkpoint-2") or process.poll() is not None)
    # the launcher and both ranks (torchrun starts each in a session of its own), no warning
    ranks = [rank_pid(process, rank) for rank in (0, 1)]
    for pid in [process.pid, *ranks]:
        os.kill(pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in ranks), timeout=30)
    resumed = torchrun(out, "eval_cache_mb=0", resume=True)  # and its evaluations read the eval set afresh
    output = finish(resumed)
    assert resumed.returncode == 0, output
    assert "resuming from" in output and "(step 8)" not in output, "the kill came too late to test a resume"
    assert read_status(str(out))["status"] == "finished"
    ref = losses(reference)
    for step, values in losses(out).items():
        assert all(v == ref[step][0] for v in values), (step, values, ref[step])
    first = load_file(str(reference / "final" / "adapter_model.safetensors"))
    second = load_file(str(out / "final" / "adapter_model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)
    # the evaluations of the resumed run, which read the eval set afresh each time, score as the
    # reference's prepared one did
    evaluated, expected = eval_metrics(out), eval_metrics(reference)
    assert evaluated.keys() == expected.keys() == {4, 8}
    for step, values in evaluated.items():
        assert all(v == expected[step][0] for v in values), (step, values, expected[step])


def test_sigterm_on_one_rank_stops_both_with_one_checkpoint(tmp_path):
    out = tmp_path / "run"
    process = torchrun(out, "max_steps=400", "save_steps=1000", "eval_steps=1000", env={"GPU_HOURLY_RATE": "3600"})
    assert wait_for(lambda: bool(losses(out)) or process.poll() is not None)
    os.kill(rank_pid(process, 1), signal.SIGTERM)
    output = finish(process)
    status = read_status(str(out))
    assert status["status"] == "preempted" and status["exit_code"] == 143, output
    complete, _ = checkpoints.scan(str(out))
    assert [c.step for c in complete] == [status["step"]] == [max(losses(out))]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(complete[0].path))
    assert "stopped by SIGTERM on another rank" in output
    # one GPU-hour rate per rank: a CPU rank counts as one device when a rate is given
    ledger = json.loads((out / "cost_ledger.json").read_text())
    assert [s["usd_per_hour"] for s in ledger["sessions"]] == [7200.0]


def test_a_stop_during_one_ranks_transcription_stops_both(tmp_path):
    """Rank 0 is cut short mid-transcription while rank 1 transcribes its share to the end: both
    must meet in the same collective (not rank 1 in the gather, rank 0 in the stop agreement)."""
    out = tmp_path / "run"
    process = torchrun(out, "max_steps=400", "save_steps=1000", "eval_steps=4", "eval_generate_samples=4",
                       "eval_generate_batch_size=1", "max_new_tokens=256", "eval_max_new_tokens=256")
    seen = []
    for line in process.stdout:  # the untrained stand-in transcribes to max_new_tokens: seconds
        seen.append(line)
        if "transcribing 4 eval samples at step 4" in line:
            os.kill(rank_pid(process, 0), signal.SIGTERM)
            break
    try:
        output = "".join(seen) + process.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:  # the ranks hang in mismatched collectives
        for rank in (0, 1):
            os.kill(rank_pid(process, rank), signal.SIGKILL)
        process.kill()
        raise
    status = read_status(str(out))
    assert status["status"] == "preempted" and status["exit_code"] == 143, output
    assert "evaluation at step 4 cut short by SIGTERM" in output
    complete, _ = checkpoints.scan(str(out))
    assert [c.step for c in complete] == [4]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(complete[0].path))
