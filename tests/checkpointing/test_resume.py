"""Resume after anything: SIGTERM, SIGKILL at random moments and mid-save, config changes, locks.

Every scenario runs the real train.py on the stand-in and compares with one uninterrupted run:
the loss at every step and the final adapter must be identical.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import start_training, train_here, wait_for
from training.checkpointing import checkpoints
from training.checkpointing.resume import choose_checkpoint
from training.checkpointing.state import HarnessState
from training.metrics_log import read_events
from training.run_status import read_status

RUN = ("max_steps=12", "save_steps=2", "eval_steps=4", "keep_best=1", "keep_recent=2", "logging_steps=1",
       "save_every_minutes=0")


def start(output_dir, *extra: str, resume: bool = True, env: dict | None = None) -> subprocess.Popen:
    return start_training(output_dir, RUN + extra, resume=resume, env=env)


def losses_by_step(output_dir) -> dict[int, list[float]]:
    seen: dict[int, list[float]] = {}
    for event in read_events(os.path.join(output_dir, "metrics.jsonl")):
        if "loss" in event:
            seen.setdefault(event["step"], []).append(event["loss"])
    return seen


def adapter(output_dir) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(output_dir, "final", "adapter_model.safetensors"))


def assert_same_run(output_dir, reference):
    ref_dir, ref_losses = reference
    got = losses_by_step(output_dir)
    assert sorted(got) == list(range(1, 13))
    for step, values in got.items():  # steps redone after a resume must repeat exactly
        assert all(v == ref_losses[step][0] for v in values), (step, values, ref_losses[step])
    ref, new = adapter(ref_dir), adapter(output_dir)
    assert ref.keys() == new.keys()
    assert all(torch.equal(ref[k], new[k]) for k in ref)


@pytest.fixture(scope="module")
def reference(module_mktemp):
    out = module_mktemp("reference") / "run"
    process = start(out, resume=False)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return out, {step: values[:1] for step, values in losses_by_step(out).items()}


def chaos(output_dir, kills: int, seed: int) -> list[str]:
    """SIGKILL `kills` runs, alternately mid-save (paused by the save itself, before its manifest or
    before its rename: training.checkpointing.checkpoints.pause_point) and at a random moment; then
    let it finish."""
    rng = random.Random(seed)
    moments = []
    for attempt in range(kills):
        if attempt % 2 == 0:
            point = ("manifest", "rename")[attempt // 2 % 2]
            marker = f"{output_dir}.paused-{attempt}"
            process = start(output_dir, env={checkpoints.PAUSE_ENV: f"{point}:{marker}"})
            caught = wait_for(lambda p=process, m=marker: os.path.exists(m) or p.poll() is not None, timeout=240)
            if not caught:
                moments.append("missed")  # neither paused nor finished: the assertion below says so
            else:
                moments.append(f"mid-save:{point}" if os.path.exists(marker) else "finished")
        else:
            process = start(output_dir)
            wait_for(lambda p=process: p.poll() is not None, timeout=rng.uniform(3.0, 9.0), poll=0.01)
            moments.append("random")
        if process.poll() is not None:  # finished before the kill
            break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    final = start(output_dir)
    output, _ = final.communicate(timeout=300)
    assert final.returncode == 0, output
    return moments


def test_sigkill_at_random_moments_and_mid_save_then_resume_auto(tmp_path, reference):
    out = tmp_path / "run"
    moments = chaos(out, kills=4, seed=1)  # both pause points, two random moments; more: -m slow
    # The first run is always killed paused before its first manifest; later ones may find the run
    # already finished by an earlier one (then the loop ends), but never miss their pause.
    assert moments[0] == "mid-save:manifest", moments
    assert all(m.startswith("mid-save:") or m in ("random", "finished") for m in moments), moments
    assert_same_run(out, reference)


@pytest.mark.slow
def test_many_sigkills(tmp_path, reference):
    for seed in range(3):
        out = tmp_path / f"run{seed}"
        chaos(out, kills=10, seed=seed + 10)
        assert_same_run(out, reference)


def test_sigterm_saves_at_the_step_reached_and_exits_143(tmp_path, reference):
    out = tmp_path / "run"
    process = start(out, resume=False)
    assert wait_for(lambda: os.path.isdir(out / "checkpoint-2"), timeout=120, poll=0.01)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 143, output
    complete, _ = checkpoints.scan(str(out))
    reached = max(losses_by_step(out))
    assert complete[-1].step == reached, (complete, reached)
    assert read_status(str(out))["status"] == "preempted"
    assert "SIGTERM received" in output and not (out / "final").exists()
    # the save after SIGTERM published the checkpoint first, then added the optimizer state to it
    assert f"checkpoint checkpoint-{reached}: optimizer state added" in output
    assert checkpoints.OPTIMIZER_FILE in manifest(complete[-1].path)
    resumed = start(out)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and f"resuming from {out / f'checkpoint-{reached}'}" in output
    assert_same_run(out, reference)


def manifest(path) -> dict:
    with open(os.path.join(path, checkpoints.MARKER_FILE), encoding="utf-8") as source:
        return json.load(source)["files"]


def test_a_checkpoint_whose_optimizer_state_was_cut_off_resumes_on_schedule(tmp_path, reference):
    out = tmp_path / "run"
    assert train_here(out, *RUN, "keep_recent=20").returncode == 0
    # What a SIGKILL between the two halves of a SIGTERM save leaves at step 6: a published checkpoint,
    # manifest and all, without optimizer.pt. (Later ones and final/ never happened.)
    for step in (8, 10, 12):
        checkpoints.delete(str(out / f"checkpoint-{step}"))
    checkpoints.delete(str(out / "final"))
    (out / "metrics.jsonl").write_text("")
    os.remove(out / "checkpoint-6" / checkpoints.OPTIMIZER_FILE)
    checkpoints.write_manifest(str(out / "checkpoint-6"), 6)
    assert checkpoints.verify(str(out / "checkpoint-6")) is None

    resumed = train_here(out, *RUN, extra=("--resume", "auto"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "checkpoint-6 has no optimizer state" in resumed.stdout
    assert "the optimizer moments of checkpoint-4" in resumed.stdout
    reference_rates = {e["step"]: e["learning_rate"] for e in read_events(str(reference[0] / "metrics.jsonl"))
                       if "learning_rate" in e}
    rates = {e["step"]: e["learning_rate"] for e in read_events(str(out / "metrics.jsonl")) if "learning_rate" in e}
    assert rates == {step: reference_rates[step] for step in range(7, 13)}, "the schedule continues from step 6"
    got = losses_by_step(out)
    assert got[7] == reference[1][7], "step 7's loss depends on the weights of step 6 alone"
    assert all(abs(got[step][0] - reference[1][step][0]) < 0.1 * reference[1][step][0] for step in range(8, 13))


def test_resume_skips_data_without_decoding_it(tmp_path, monkeypatch):
    from training.data.sources import SyntheticSplit

    out = tmp_path / "run"
    assert train_here(out, *RUN, "max_steps=6").returncode == 0
    read, read_one = set(), SyntheticSplit.__getitem__

    def reading(split, index):  # what the resumed run reads (and decodes), passed through
        read.add((split.split, index))
        return read_one(split, index)

    monkeypatch.setattr(SyntheticSplit, "__getitem__", reading)
    assert train_here(out, *RUN, extra=("--resume", "auto")).returncode == 0
    # 6 more steps of 2 x 4 samples and the 8 eval samples (steps 7-12 end the 96-sample epoch, so
    # the loader's read-ahead finds nothing more): the 48 samples of steps 1-6 are never read.
    assert len(read) == 6 * 8 + 8


def test_changed_shape_is_refused_and_schedule_changes_warn(tmp_path):
    out = tmp_path / "run"
    assert train_here(out, *RUN, "max_steps=4").returncode == 0
    refused = train_here(out, *RUN, "r=16", extra=("--resume", "auto"))
    assert refused.returncode == 2
    assert "r 32 -> 16: the checkpoint's adapter has another shape" in refused.stderr
    assert "Traceback" not in refused.stderr

    longer = train_here(out, *RUN, "max_steps=6", "learning_rate=1e-3", extra=("--resume", "auto"))
    assert longer.returncode == 0, longer.stdout + longer.stderr
    assert "config changed since the checkpoint: max_steps 4 -> 6" in longer.stdout
    assert "learning_rate 0.001 applied from step 4" in longer.stdout
    rates = {e["step"]: e["learning_rate"] for e in read_events(str(out / "metrics.jsonl")) if "learning_rate" in e}
    # linear decay to step 6, now from the new peak: step 5 trains at 1e-3 * (6 - 4) / 6
    assert rates[5] == pytest.approx(1e-3 * 2 / 6)


def test_resume_path_to_a_torn_checkpoint_is_refused(tmp_path):
    out = tmp_path / "run"
    assert train_here(out, *RUN, "max_steps=2").returncode == 0
    os.remove(out / "checkpoint-2" / checkpoints.MARKER_FILE)
    result = train_here(out, *RUN, extra=("--resume", str(out / "checkpoint-2")))
    assert result.returncode == 2 and "incomplete: no COMPLETE marker" in result.stderr
    fresh = train_here(out, *RUN, "max_steps=2", extra=("--resume", "auto"))
    assert fresh.returncode == 0
    assert "skipping" in fresh.stdout and "starting fresh" in fresh.stdout


def test_one_trainer_per_output_dir_and_stale_locks_do_not_block(tmp_path):
    out = tmp_path / "run"
    first = start(out, "max_steps=400", "save_steps=1000", "eval_steps=1000", resume=False)
    try:
        assert wait_for(lambda: losses_by_step(out), timeout=120, poll=0.05)
        second = train_here(out, *RUN, extra=("--resume", "auto"))
        assert second.returncode == 4, second.stdout + second.stderr
        assert f"is in use by pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    # the holder died without cleaning up; its lock died with it
    after = train_here(out, *RUN, "max_steps=2", extra=("--resume", "auto"))
    assert after.returncode == 0, after.stdout + after.stderr


def test_time_cadence_saves_between_save_steps(tmp_path):
    out = tmp_path / "run"
    result = train_here(out, *RUN, "max_steps=3", "save_steps=100", "eval_steps=100", "keep_recent=5",
                   "save_every_minutes=0.00001")
    assert result.returncode == 0, result.stdout + result.stderr
    complete, _ = checkpoints.scan(str(out))
    assert [c.step for c in complete] == [1, 2, 3]


def test_resume_across_an_epoch_boundary_and_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    # 100 samples at 8 a step: 96 are used, 12 whole steps an epoch, so step 16 is in the second epoch
    whole = train_here(out, *RUN, "max_steps=16", "keep_recent=3", "eval_steps=100")
    assert whole.returncode == 0 and "4 left out so each epoch is whole steps of 8" in whole.stdout
    reference = losses_by_step(out)
    final = adapter(out)

    # killed after checkpoint-14 was written: resume in the second epoch
    for name in ("checkpoint-16", "final"):
        checkpoints.delete(str(out / name))
    (out / "metrics.jsonl").write_text("")
    assert train_here(out, *RUN, "max_steps=16", "keep_recent=3", "eval_steps=100",
                      extra=("--resume", "auto")).returncode == 0
    assert losses_by_step(out) == {15: reference[15], 16: reference[16]}
    assert all(torch.equal(final[k], v) for k, v in adapter(out).items())

    # killed between the last checkpoint and final/: nothing to train, final/ from the checkpoint
    checkpoints.delete(str(out / "final"))
    again = train_here(out, *RUN, "max_steps=16", "keep_recent=3", "eval_steps=100", extra=("--resume", "auto"))
    assert again.returncode == 0 and "the checkpoint is at max_steps=16" in again.stdout
    assert all(torch.equal(final[k], v) for k, v in adapter(out).items())
    assert max(losses_by_step(out)) == 16


def test_a_fresh_run_refuses_to_start_over_an_earlier_one(tmp_path):
    out = tmp_path / "run"
    assert train_here(out, *RUN, "max_steps=2").returncode == 0
    before = sorted(p.name for p in out.iterdir()), (out / "metrics.jsonl").read_text()
    again = train_here(out, *RUN, "max_steps=2")
    assert again.returncode == 2
    assert "already holds a run (checkpoint-2, final/): continue it with --resume auto" in again.stderr
    assert (sorted(p.name for p in out.iterdir()), (out / "metrics.jsonl").read_text()) == before


def test_fork_from_an_older_checkpoint_sets_the_abandoned_line_aside(tmp_path):
    out = tmp_path / "run"
    assert train_here(out, *RUN, "max_steps=6", "keep_recent=5", "eval_steps=100").returncode == 0
    old = {step: (out / f"checkpoint-{step}" / "adapter_model.safetensors").read_bytes() for step in (4, 6)}
    # Lower the learning rate from step 2: the new line must not be confused with the old one.
    fork = train_here(out, *RUN, "max_steps=4", "keep_recent=1", "eval_steps=100", "learning_rate=1e-3",
                      extra=("--resume", str(out / "checkpoint-2")))
    assert fork.returncode == 0, fork.stdout + fork.stderr
    assert "moved aside (kept, not deleted): checkpoint-4, checkpoint-6, final" in fork.stdout
    [aside] = (out / "abandoned").iterdir()
    assert {p.name for p in aside.iterdir()} == {"checkpoint-4", "checkpoint-6", "final"}
    assert {s: (aside / f"checkpoint-{s}" / "adapter_model.safetensors").read_bytes() for s in (4, 6)} == old
    # `auto` (what setup_pod.sh runs) continues the new line, not the abandoned one
    choice = choose_checkpoint("auto", str(out))
    assert choice.path == str(out / "checkpoint-4")
    assert HarnessState.load(choice.path).config["learning_rate"] == 1e-3


def test_a_verified_staged_checkpoint_whose_target_is_missing_is_promoted(tmp_path):
    # Killed while re-saving a step: the old copy already discarded, the new one complete in .staging/.
    out = tmp_path / "run"
    assert train_here(out, *RUN, "max_steps=4", "keep_recent=5", "eval_steps=100").returncode == 0
    os.makedirs(out / checkpoints.STAGING_DIR, exist_ok=True)
    os.rename(out / "checkpoint-4", out / checkpoints.STAGING_DIR / "checkpoint-4")
    checkpoints.delete(str(out / "final"))
    again = train_here(out, *RUN, "max_steps=4", "keep_recent=5", "eval_steps=100", extra=("--resume", "auto"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "promoted .staging/checkpoint-4" in again.stdout
    assert f"resuming from {out / 'checkpoint-4'}" in again.stdout


def sigterm_when(process: subprocess.Popen, line_part: str, saved: str) -> tuple[str, float]:
    """SIGTERM `process` as soon as it prints a line containing `line_part`; (its whole output,
    seconds from the signal until the checkpoint `saved` was complete on disk)."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line_part in line:
            break
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    # The output is read after the process exits: a checkpoint of 4.6 MB needs no pipe drained.
    wait_for(lambda: os.path.isfile(os.path.join(saved, checkpoints.MARKER_FILE)), timeout=120, poll=0.01)
    seconds = time.monotonic() - signalled
    rest, _ = process.communicate(timeout=120)
    return "".join(seen) + rest, seconds


@pytest.mark.parametrize("moment", ["evaluating at step 2", "transcribing 20 eval samples at step 2"])
def test_sigterm_during_evaluation_saves_within_the_grace_and_records_no_evaluation(tmp_path, moment):
    """RunPod kills 5 s after SIGTERM: an evaluation (20 eval losses, then 20 greedy
    transcriptions, far longer than that here) is cut short between batches and between tokens."""
    out = tmp_path / "run"
    process = start(out, "max_steps=4", "eval_steps=2", "eval_subset=20", "eval_generate_samples=-1",
                    "per_device_eval_batch_size=1", resume=False)
    output, seconds = sigterm_when(process, moment, str(out / "checkpoint-2"))
    assert process.returncode == 143, output
    assert seconds < 5, (seconds, output)  # saved within the grace (the interpreter's exit comes after)
    assert "evaluation at step 2 cut short by SIGTERM: not recorded" in output
    complete, _ = checkpoints.scan(str(out))
    assert [(c.step, c.eval_loss) for c in complete] == [(2, None)]
    assert not any("eval_loss" in e for e in read_events(str(out / "metrics.jsonl")))
    assert not (out / "worst_samples").exists()


def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_good_one(tmp_path):
    # What a torn write leaves: the newest adapter at its full size with 64 bytes zeroed (here its
    # header). Every restart used to die on it (SafetensorError, rc 1) while a good checkpoint sat beside it.
    out = tmp_path / "run"
    assert train_here(out, *RUN, "max_steps=4").returncode == 0
    with open(out / "checkpoint-4" / "adapter_model.safetensors", "r+b") as damaged:
        damaged.write(bytes(64))
    resumed = train_here(out, *RUN, "max_steps=6", extra=("--resume", "auto"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stdout + resumed.stderr
    assert re.search(r"skipping \S*checkpoint-4: damaged file adapter_model.safetensors", resumed.stdout), resumed.stdout
    assert re.search(r"resuming from \S*checkpoint-2 \(step 2\)", resumed.stdout)
    assert read_status(str(out))["status"] == "finished" and read_status(str(out))["step"] == 6
