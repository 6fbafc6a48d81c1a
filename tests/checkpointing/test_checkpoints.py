"""Checkpoint files: atomic publish, verification of what a crash or a disk can leave behind."""

from __future__ import annotations

import json
import os

import pytest

from training.checkpointing import checkpoints
from training.checkpointing.resume import abandoned_by_fork, choose_checkpoint, config_changes
from training.checkpointing.state import HarnessState
from training.errors import UserError


def make_checkpoint(output_dir, step: int, eval_loss=None, payload: bytes = b"weights") -> str:
    staging = checkpoints.staging_path(str(output_dir), step)
    os.makedirs(staging)
    with open(os.path.join(staging, "adapter_model.safetensors"), "wb") as out:
        out.write(payload)
    with open(os.path.join(staging, checkpoints.TRAINER_STATE_FILE), "w") as out:
        json.dump({"global_step": step}, out)
    HarnessState(step=step, eval_loss=eval_loss).save(staging)
    return checkpoints.publish(staging, str(output_dir), step)


def test_publish_makes_a_verified_checkpoint(tmp_path):
    path = make_checkpoint(tmp_path, 5, eval_loss=1.5)
    assert path == str(tmp_path / "checkpoint-5")
    assert checkpoints.verify(path) is None
    assert not os.listdir(tmp_path / checkpoints.STAGING_DIR)
    complete, rejected = checkpoints.scan(str(tmp_path))
    assert [(c.step, c.eval_loss) for c in complete] == [(5, 1.5)] and rejected == []


def test_publish_replaces_a_checkpoint_of_the_same_step(tmp_path):
    make_checkpoint(tmp_path, 5, payload=b"old")
    path = make_checkpoint(tmp_path, 5, payload=b"newer")
    assert (tmp_path / "checkpoint-5" / "adapter_model.safetensors").read_bytes() == b"newer"
    assert checkpoints.verify(path) is None


@pytest.mark.parametrize("damage, reason", [
    (lambda p: os.remove(os.path.join(p, checkpoints.MARKER_FILE)), "incomplete: no COMPLETE marker"),
    (lambda p: open(os.path.join(p, "adapter_model.safetensors"), "wb").write(b"x"), "truncated file adapter_model"),
    (lambda p: os.remove(os.path.join(p, "adapter_model.safetensors")), "missing file adapter_model"),
    (lambda p: open(os.path.join(p, checkpoints.MARKER_FILE), "w").write("{"), "unreadable COMPLETE"),
])
def test_verify_names_what_is_wrong(tmp_path, damage, reason):
    path = make_checkpoint(tmp_path, 3)
    damage(path)
    assert reason in checkpoints.verify(path)


def test_resume_auto_falls_back_to_the_previous_complete_checkpoint(tmp_path):
    make_checkpoint(tmp_path, 2)
    make_checkpoint(tmp_path, 4)
    newest = make_checkpoint(tmp_path, 6)
    os.remove(os.path.join(newest, checkpoints.MARKER_FILE))
    (tmp_path / "checkpoint-8").mkdir()  # a directory someone made by hand
    choice = choose_checkpoint("auto", str(tmp_path))
    assert choice.path == str(tmp_path / "checkpoint-4")
    assert [(os.path.basename(p), why.split(":")[0]) for p, why in choice.skipped] == [
        ("checkpoint-6", "incomplete"), ("checkpoint-8", "incomplete")]


def zero_bytes(path: str, offset: int, count: int = 64) -> None:
    """What a torn write or a bad disk leaves: the size kept, some bytes zeroed."""
    with open(path, "r+b") as damaged:
        damaged.seek(offset)
        damaged.write(bytes(count))


def test_the_manifest_holds_each_files_sha256_and_resume_checks_it(tmp_path):
    path = make_checkpoint(tmp_path, 3, payload=b"w" * 4096)
    adapter = os.path.join(path, "adapter_model.safetensors")
    manifest = checkpoints.read_manifest(path)
    assert manifest["format"] == 2 and manifest["sha256"]["adapter_model.safetensors"] == checkpoints.file_sha256(adapter)
    assert set(manifest["sha256"]) == set(manifest["files"])
    zero_bytes(adapter, 2048)  # in the middle of the tensors: safetensors would load it without a word
    assert checkpoints.verify(path) is None, "scans check sizes only"
    assert "damaged file adapter_model.safetensors" in checkpoints.verify(path, content=True)
    with pytest.raises(UserError, match="damaged file adapter_model.safetensors"):
        choose_checkpoint(path, str(tmp_path))


def test_resume_auto_takes_the_newest_undamaged_checkpoint(tmp_path):
    make_checkpoint(tmp_path, 2, payload=b"a" * 256)
    make_checkpoint(tmp_path, 4, payload=b"b" * 256)
    make_checkpoint(tmp_path, 6, payload=b"c" * 256)
    for step in (4, 6):
        zero_bytes(str(tmp_path / f"checkpoint-{step}" / "adapter_model.safetensors"), 0)
    choice = choose_checkpoint("auto", str(tmp_path))
    assert choice.path == str(tmp_path / "checkpoint-2")
    assert [os.path.basename(p) for p, _ in choice.damaged] == ["checkpoint-6", "checkpoint-4"]
    assert [os.path.basename(p) for p, _ in choice.skipped] == ["checkpoint-4", "checkpoint-6"]


def test_a_manifest_without_hashes_still_resumes(tmp_path):
    # Checkpoints written before hashes were recorded (format 1), or by a save killed before its hashes.
    path = make_checkpoint(tmp_path, 2)
    checkpoints.write_manifest(path, 2, digest=False)
    assert checkpoints.read_manifest(path)["sha256"] == {}
    assert checkpoints.verify(path, content=True) is None
    assert choose_checkpoint("auto", str(tmp_path)).path == path


def test_an_urgent_save_publishes_sizes_first_and_hashes_when_the_optimizer_state_is_added(tmp_path):
    staging = checkpoints.staging_path(str(tmp_path), 4)
    os.makedirs(staging)
    with open(os.path.join(staging, checkpoints.TRAINER_STATE_FILE), "w") as out:
        json.dump({"global_step": 4}, out)
    HarnessState(step=4).save(staging)
    path = checkpoints.publish(staging, str(tmp_path), 4, digest=False)
    assert checkpoints.read_manifest(path)["sha256"] == {} and checkpoints.verify(path, content=True) is None
    checkpoints.add_file(path, checkpoints.OPTIMIZER_FILE, lambda file: open(file, "wb").write(b"moments"))
    manifest = checkpoints.read_manifest(path)
    assert set(manifest["sha256"]) == set(manifest["files"]) and checkpoints.OPTIMIZER_FILE in manifest["files"]
    assert checkpoints.verify(path, content=True) is None


def test_resume_auto_without_checkpoints_starts_fresh(tmp_path):
    assert choose_checkpoint("auto", str(tmp_path / "nothing-yet")).path is None
    assert choose_checkpoint(None, str(tmp_path)).path is None


def test_resume_path_must_be_complete(tmp_path):
    path = make_checkpoint(tmp_path, 2)
    assert choose_checkpoint(path, str(tmp_path)).path == path
    os.remove(os.path.join(path, checkpoints.MARKER_FILE))
    with pytest.raises(UserError, match="incomplete"):
        choose_checkpoint(path, str(tmp_path))


def test_delete_and_clear_staging_leave_nothing_that_looks_like_a_checkpoint(tmp_path):
    path = make_checkpoint(tmp_path, 2)
    os.makedirs(checkpoints.staging_path(str(tmp_path), 4))  # a save killed midway
    checkpoints.delete(path)
    assert not os.path.exists(path)
    assert checkpoints.clear_staging(str(tmp_path)) == ([], ["checkpoint-4"])
    assert sorted(os.listdir(tmp_path)) == []


def test_clear_staging_promotes_only_a_complete_staged_checkpoint_without_a_target(tmp_path):
    for step in (2, 4, 6):
        make_checkpoint(tmp_path, step, payload=b"old")
    for step in (2, 4):  # complete re-saves: 2 still has its old copy, 4 lost it to the crash
        os.rename(make_checkpoint(tmp_path / "resave", step, payload=b"new"), checkpoints.staging_path(str(tmp_path), step))
    checkpoints.delete(str(tmp_path / "checkpoint-4"))
    checkpoints.delete(str(tmp_path / "checkpoint-6"))
    os.makedirs(checkpoints.staging_path(str(tmp_path), 6))  # torn: never promoted
    assert checkpoints.clear_staging(str(tmp_path)) == (["checkpoint-4"], ["checkpoint-2", "checkpoint-6"])
    assert (tmp_path / "checkpoint-2" / "adapter_model.safetensors").read_bytes() == b"old"
    assert (tmp_path / "checkpoint-4" / "adapter_model.safetensors").read_bytes() == b"new"
    assert not (tmp_path / "checkpoint-6").exists()


@pytest.mark.parametrize("resumed, steps, abandoned", [
    (2, [2, 4, 6], [4, 6]),
    (6, [2, 4, 6], []),
    (3, [6, 2, 4], [4, 6]),
    (2, [], []),
])
def test_a_fork_abandons_every_newer_checkpoint(resumed, steps, abandoned):
    assert abandoned_by_fork(resumed, steps) == abandoned


@pytest.mark.parametrize("field, before, after, verdict", [
    ("r", 16, 32, "refuse"),
    ("lora_alpha", 16, 8, "refuse"),
    ("model_name", "a/b", "c/d", "refuse"),
    ("lora_target_modules", "all-linear", "q_proj", "refuse"),
    ("max_steps", 500, 800, "warn"),
    ("learning_rate", 2e-4, 1e-4, "warn"),
    ("per_device_train_batch_size", 2, 4, "warn"),
    ("output_dir", "/a", "/b", "same"),
    ("experiment_name", "x", "y", "same"),
    ("seed", 1, 1, "same"),
])
def test_config_change_policy(field, before, after, verdict):
    refusals, warnings = config_changes({field: before}, {field: after})
    got = "refuse" if refusals else "warn" if warnings else "same"
    assert got == verdict
    if refusals:
        assert field in refusals[0] and "another shape" in refusals[0]
