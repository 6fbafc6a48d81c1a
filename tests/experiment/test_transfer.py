"""`pull NAME --volume-id` and `data push DIR --volume-id` (training.experiment.transfer) against moto's S3
server behind RunPod's documented rules (tests/fake_volume.py) and the RunPod API fake: a real run's
final/ and checkpoints pulled and verified as a resume verifies them; a checkpoint damaged on the
volume and a file corrupted on the way refused with nothing written; a dataset pushed, interrupted
and resumed, sending only what is missing and its metadata last."""

from __future__ import annotations

import filecmp
import json

import pytest
from fake_runpod import FakeRunPod

from training.checkpointing.checkpoints import verify

RUN = "checkpoints/small-run"


@pytest.fixture(scope="module")
def api():
    with FakeRunPod(max_requests=500, lifetime_s=900) as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture(scope="module")
def on_volume(volume_server, small_run):
    """The small run on the volume as its pod left it, and a copy whose checkpoint-4 lost the end of
    its adapter after the save (a truncated copy), as `damaged-run`."""
    volume_server.put_tree(small_run, RUN)
    volume_server.put_tree(small_run, "checkpoints/damaged-run")
    whole = (small_run / "checkpoint-4" / "adapter_model.safetensors").read_bytes()
    volume_server.client().put_object(Bucket="vol-eu1", Key="checkpoints/damaged-run/checkpoint-4/adapter_model.safetensors",
                                      Body=whole[: len(whole) // 2])
    yield small_run
    volume_server.wipe()


def same_tree(left, right) -> bool:
    compared = filecmp.dircmp(left, right)
    files = [p.relative_to(left) for p in left.rglob("*") if p.is_file()]
    return (not compared.left_only and not compared.right_only
            and all(filecmp.cmp(left / f, right / f, shallow=False) for f in files))


def test_pull_final_from_the_volume(on_volume, volume_cli, tmp_path):
    target = tmp_path / "pulled" / "final"
    result = volume_cli("pull", "small-run", "--volume-id", "vol-eu1", "--into", str(target))
    assert result.returncode == 0, result.stderr
    assert same_tree(on_volume / "final", target)
    assert result.stdout.startswith(f"pulled final of small-run from network volume vol-eu1:{RUN}/ (EU-RO-1, S3 API) "
                                    f"into {target}: ")
    assert "verified against the volume's MD5s" in result.stdout
    result = volume_cli("pull", "small-run", "--volume-id", "vol-eu1", "--into", str(target))
    assert result.returncode == 2 and "already exists; pass --force" in result.stderr
    (target / "adapter_config.json").write_text("changed here")
    assert volume_cli("pull", "small-run", "--volume-id", "vol-eu1", "--into", str(target), "--force").returncode == 0
    assert same_tree(on_volume / "final", target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["final"]  # no staging left beside it


def best_step(run) -> int:
    losses = {int(p.name.split("-")[1]): json.loads((p / "harness_state.json").read_text())["eval_loss"]
              for p in run.glob("checkpoint-*")}
    return min(losses, key=lambda step: (losses[step], -step))


@pytest.mark.parametrize("which", ["best", "latest", "4"])
def test_pull_a_checkpoint_verified_as_a_resume_verifies_it(which, on_volume, volume_cli, tmp_path):
    step = {"best": best_step(on_volume), "latest": 6, "4": 4}[which]
    result = volume_cli("pull", "small-run", "--volume-id", "vol-eu1", "--checkpoint", which, "--outputs", str(tmp_path))
    assert result.returncode == 0, result.stderr
    target = tmp_path / "small-run" / f"checkpoint-{step}"  # the default: where the run's own would be
    assert verify(str(target)) is None and same_tree(on_volume / f"checkpoint-{step}", target)
    assert "verified against its manifest and MD5s" in result.stdout


def test_a_checkpoint_damaged_on_the_volume_is_refused_before_any_download(on_volume, volume_cli, tmp_path, volume_server):
    volume_server.clear_log()
    target = tmp_path / "damaged"
    result = volume_cli("pull", "damaged-run", "--volume-id", "vol-eu1", "--checkpoint", "4", "--into", str(target))
    size = (on_volume / "checkpoint-4" / "adapter_model.safetensors").stat().st_size
    assert result.returncode == 2 and result.stderr == (
        f"error: network volume vol-eu1:checkpoints/damaged-run/ (EU-RO-1, S3 API): checkpoint-4 is damaged: "
        f"adapter_model.safetensors is {size // 2} bytes on the volume, its manifest says {size}; pull another "
        "checkpoint\n")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    gets = [e["key"] for e in volume_server.log() if e["method"] == "GET" and e["key"]]
    assert gets == ["checkpoints/damaged-run/checkpoint-4/COMPLETE"]  # the manifest, nothing else
    # Its other checkpoints are whole: `latest` still comes down.
    assert volume_cli("pull", "damaged-run", "--volume-id", "vol-eu1", "--checkpoint", "latest", "--into", str(target)).returncode == 0


def test_a_file_corrupted_on_the_way_is_refused(on_volume, volume_cli, tmp_path, volume_server):
    volume_server.faults(corrupt_key=f"{RUN}/final/adapter_model.safetensors")
    target = tmp_path / "final"
    try:
        result = volume_cli("pull", "small-run", "--volume-id", "vol-eu1", "--into", str(target))
    finally:
        volume_server.faults()
    assert result.returncode == 2 and result.stderr == (
        f"error: network volume vol-eu1:{RUN}/final/ (EU-RO-1, S3 API): adapter_model.safetensors arrived corrupted "
        "(its MD5 is not the volume's ETag); nothing was written: try again\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "best"], "--checkpoint: checkpoints are on the network volume only: add --volume-id ID"),
    (["--volume-id", "vol-eu1", "--checkpoint", "soonest"], "--checkpoint soonest: best, latest or a step number"),
    (["--volume-id", "vol-eu1", "--checkpoint", "5"], "--checkpoint 5: no checkpoint-5 in network volume vol-eu1:"),
])
def test_pull_refusals(args, message, on_volume, volume_cli):
    result = volume_cli("pull", "small-run", *args)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {message}"), result.stderr


def test_pull_of_a_run_not_on_the_volume(on_volume, volume_cli):
    result = volume_cli("pull", "nowhere", "--volume-id", "vol-eu1")
    assert result.returncode == 2 and "no final/ there" in result.stderr


@pytest.fixture
def dataset(tmp_path):
    """A dataset folder as dataset_name reads it: split folders of PNG headers beside metadata.jsonl."""
    from PIL import Image

    root = tmp_path / "headers"
    for split, count in (("train", 12), ("validation", 4)):
        (root / split).mkdir(parents=True)
        rows = []
        for index in range(count):
            name = f"{split}-{index:02d}.png"
            Image.new("RGB", (64 + index, 32), (index * 20 % 255, 40, 90)).save(root / split / name)
            rows.append({"file_name": name, "text": f"WELL {index} API 42-{index:03d}"})
        (root / split / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def puts(volume_server) -> list[str]:
    return [e["key"] for e in volume_server.log() if e["method"] == "PUT" and e["status"] == 200]


def test_data_push_sends_a_dataset_once(dataset, volume_cli, volume_server):
    volume_server.clear_log()
    result = volume_cli("data", "push", str(dataset), "--volume-id", "vol-eu1", "--as", "headers-v1")
    assert result.returncode == 0, result.stderr
    files = {str(p.relative_to(dataset)): p.stat().st_size for p in dataset.rglob("*") if p.is_file()}
    assert volume_server.keys("data/headers-v1/") == {f"data/headers-v1/{k}": v for k, v in files.items()}
    sent = puts(volume_server)
    assert sorted(sent) == sorted(f"data/headers-v1/{k}" for k in files)
    assert all(key.endswith("metadata.jsonl") for key in sent[-2:])  # the listings last
    assert f"{len(files)} files" in result.stdout and "0 already there" in result.stdout
    assert 'on a pod that mounts it: dataset_name="/runpod_volume/data/headers-v1"' in result.stdout

    volume_server.clear_log()
    (dataset / "train" / "train-03.png").write_bytes(b"x" * (dataset / "train" / "train-03.png").stat().st_size)
    result = volume_cli("data", "push", str(dataset), "--volume-id", "vol-eu1", "--as", "headers-v1")
    assert result.returncode == 0 and puts(volume_server) == ["data/headers-v1/train/train-03.png"]  # same size, new MD5
    assert f"{len(files) - 1} already there (same size and MD5) skipped" in result.stdout


def test_data_push_interrupted_then_resumed(dataset, volume_cli, volume_server):
    volume_server.clear_log()
    volume_server.faults(fail_puts_after=5)  # the sixth upload on fails: SlowDown, retried, given up
    try:
        result = volume_cli("data", "push", str(dataset), "--volume-id", "vol-eu1", "--as", "headers-v2")
    finally:
        volume_server.faults()
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "SlowDown" in result.stderr and "5 of 18 files went up before it: run the same command again" in result.stderr
    first = set(puts(volume_server))
    assert len(first) == 5 and set(volume_server.keys("data/headers-v2/")) == first
    assert not any(key.endswith("metadata.jsonl") for key in first)  # no listing of images that are not there

    volume_server.clear_log()
    result = volume_cli("data", "push", str(dataset), "--volume-id", "vol-eu1", "--as", "headers-v2")
    assert result.returncode == 0, result.stderr
    assert len(puts(volume_server)) == 13 and not first & set(puts(volume_server))
    assert "5 already there (same size and MD5) skipped" in result.stdout
    assert len(volume_server.keys("data/headers-v2/")) == 18


def test_data_push_refuses_what_is_not_a_dataset(tmp_path, volume_cli, volume_server):
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "a.png").write_bytes(b"png")
    result = volume_cli("data", "push", str(tmp_path / "loose"), "--volume-id", "vol-eu1")
    assert result.returncode == 2 and "no metadata.jsonl, metadata.csv or parquet files in it" in result.stderr
    assert volume_server.keys("data/loose/") == {}
    result = volume_cli("data", "push", str(tmp_path / "loose"))
    assert result.returncode == 2 and "--volume-id ID is required" in result.stderr
