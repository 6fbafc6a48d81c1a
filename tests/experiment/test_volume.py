"""Runs read from a network volume through RunPod's S3 API (training.experiment.volume), from a laptop:
moto's S3 server behind RunPod's documented rules (tests/fake_volume.py, with the real boto3 client)
and the RunPod API fake answering the volume's data center. A sweep of 20 runs written to the volume
as pods write them: status, compare (table and PNG, the same as from a local copy, reading only the
small files), fleet status with RunPod's billing, the fleet's outcome from run_status.json; the
refusals (a data center without the S3 API, missing or refused keys), and keys never printed or written."""

from __future__ import annotations

import json
import shutil

import pytest
from fake_runpod import API_KEY, FakeRunPod

from training.experiment.fleet_queue import Queue
from training.experiment.runs import read_run, read_runs, recorded_outcome
from training.experiment.volume import open_volume
from training.run_files import LocalDir
from training.runpod.client import Api

SWEEP = 20
SMALL_FILES = ("training_config.json", "run_status.json", "metrics.jsonl")


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def api():
    clock = Clock()
    with FakeRunPod(max_requests=1000, lifetime_s=900, clock=clock) as fake:
        fake.clock_ = clock
        yield fake
    assert fake.server_errors == []


@pytest.fixture(scope="module")
def sweep(volume_server, small_run, module_mktemp):
    """A sweep's 20 runs on the volume as pods write them (the small run's files, its figures varied
    run by run; a few keep a checkpoint and an empty .staging/), and the same tree on local disk."""
    local = module_mktemp("sweep") / "checkpoints"
    config = json.loads((small_run / "training_config.json").read_text())
    events = [json.loads(line) for line in (small_run / "metrics.jsonl").read_text().splitlines()]
    status = json.loads((small_run / "run_status.json").read_text())
    for index in range(SWEEP):
        name = f"sweep-lr{index:02d}"
        run = local / name
        run.mkdir(parents=True)
        scale = 1 + (index * 7 % 20) / 10
        (run / "training_config.json").write_text(json.dumps({**config, "experiment_name": name,
                                                              "learning_rate": round(1e-4 * (index + 1), 6)}))
        varied = [{**e, **{k: round(e[k] * scale, 6) for k in ("loss", "eval_loss", "eval_cer", "eval_wer") if k in e},
                   "cost_usd": round(0.01 * (index + 1) * e.get("step", 0), 4)} for e in events]
        (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in varied))
        done = index % 5 != 4
        (run / "run_status.json").write_text(json.dumps({**status, "experiment_name": name,
                                                         "status": "finished" if done else "running",
                                                         "step": 6 if done else 4, "cost_usd": 0.06 * (index + 1)}))
        if index % 6 == 0:
            shutil.copytree(small_run / "checkpoint-2", run / "checkpoint-2")
            (run / ".staging").mkdir()
    volume_server.put_tree(local, "checkpoints")
    yield local
    volume_server.wipe()


def table(output: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in output.splitlines() if line.startswith("sweep-")}


def test_compare_on_the_volume_is_the_compare_of_the_same_runs_on_disk(sweep, volume_cli, volume_server, tmp_path):
    volume_server.clear_log()
    plot = tmp_path / "plots" / "sweep.png"
    remote = volume_cli("compare", "--volume-id", "vol-eu1", "--markdown", "--plot", str(plot))
    assert remote.returncode == 0, remote.stderr
    local = volume_cli("compare", "--outputs", str(sweep), "--markdown")
    assert remote.stdout.splitlines() == local.stdout.splitlines() + [f"plot: {plot}"]
    rows = [line for line in remote.stdout.splitlines() if line.startswith("| sweep-")]
    assert len(rows) == SWEEP and " | running |" in remote.stdout and " | finished |" in remote.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000

    # Only the small files are read, and only shallow listings are made (RunPod hashes what it lists).
    log = volume_server.log()
    reads = [e["key"] for e in log if e["method"] == "GET" and e["key"]]
    assert len(reads) == 3 * SWEEP and all(key.rsplit("/", 1)[-1] in SMALL_FILES for key in reads)
    listings = [e for e in log if e["method"] == "GET" and not e["key"]]
    assert len(listings) == 1 and "delimiter" in listings[0]["query"]
    assert not any("checkpoint-" in e["key"] for e in log)
    assert files_holding(tmp_path, volume_server) == []


def test_the_two_backends_answer_alike(sweep, api, volume_server, monkeypatch, small_run):
    for key, value in volume_server.env().items():
        monkeypatch.setenv(key, value)
    volume = open_volume("vol-eu1", Api(API_KEY, base=api.url)).sub("checkpoints")
    local = LocalDir(str(sweep))
    assert volume.children() == local.children() == [f"sweep-lr{i:02d}" for i in range(SWEEP)]
    for name in ("sweep-lr00", "sweep-lr03"):  # with a checkpoint and an empty .staging/, and without
        assert volume.sub(name).children() == local.sub(name).children()
        assert [(e.path, e.size) for e in volume.sub(name).entries()] == [(e.path, e.size) for e in local.sub(name).entries()]
    assert volume.read("sweep-lr00/metrics.jsonl") == local.read("sweep-lr00/metrics.jsonl")
    assert volume.read("sweep-lr00/no-such-file") is None and volume.json("sweep-lr00/metrics.jsonl") is None
    remote, here = read_runs(volume), read_runs(local)
    assert [(r.name, r.step, r.cost, r.best("eval_cer"), r.state) for r in remote] == \
           [(r.name, r.step, r.cost, r.best("eval_cer"), r.state) for r in here]
    assert volume.sub("sweep-lr00/checkpoint-2").entries()[0].etag  # S3 gives each file its MD5


def test_status_reads_each_pods_run_from_the_volume(sweep, volume_cli, api):
    first = api.add_pod("exp-sweep-lr03", uptime=3725, cost=0.69)
    second = api.add_pod("exp-elsewhere", uptime=60, cost=0.34)
    try:
        result = volume_cli("status", "--volume-id", "vol-eu1")
        assert result.returncode == 0, result.stderr
        rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
        assert rows["sweep-lr03"][1] == first and rows["sweep-lr03"][-3:] == ["6/6", "$0.24", "finished"]
        assert rows["elsewhere"][1] == second and rows["elsewhere"][-3:] == ["not", "readable", "here"]
        result = volume_cli("status", "sweep-lr04", "--volume-id", "vol-eu1")  # no pod: its run files
        assert result.stdout.splitlines() == ["experiment sweep-lr04: no pod", "  run files: running, step 4/6, $0.30"]
    finally:
        api.pods.clear()


def test_fleet_status_from_the_volume_with_runpods_billing(sweep, volume_cli, api, tmp_path, volume_server):
    db = str(tmp_path / "fleet.sqlite")
    queue = Queue(db, clock=api.clock_)
    names = ["sweep-lr01", "sweep-lr02", "sweep-lr07"]
    queue.add(names, 0, ["NVIDIA GeForce RTX 4090"], True)
    # sweep-lr01: two pods (a preempted one, terminated, then its relaunch); sweep-lr02 one; sweep-lr07 none yet.
    first = api.add_pod("exp-sweep-lr01", uptime=0, cost=0.35)
    queue.update("sweep-lr01", state="running", pod_id=first, attempts=1)
    api.clock_.now += 1800
    Api(API_KEY, base=api.url).terminate(first)
    second = api.add_pod("exp-sweep-lr01", uptime=0, cost=0.69)
    queue.update("sweep-lr01", state="finished", pod_id=second, attempts=2, spent_usd=0.88)
    third = api.add_pod("exp-sweep-lr02", uptime=0, cost=0.69)
    queue.update("sweep-lr02", state="running", pod_id=third, attempts=1)
    api.clock_.now += 3600
    billed = api.billed_by_pod()
    try:
        result = volume_cli("fleet", "status", "--db", db, "--volume-id", "vol-eu1", "--billing")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].split()[:9] == ["experiment", "state", "attempts", "preempted", "gpu", "kind", "uptime",
                                        "dollars", "billed"]
        rows = table(result.stdout)
        assert rows["sweep-lr01"][8] == f"${billed[first] + billed[second]:.2f}"
        assert rows["sweep-lr02"][8] == f"${billed[third]:.2f}" and rows["sweep-lr07"][8] == "-"
        for name in names:  # step, best eval_loss and CER: the run's own, read from the volume
            run = read_run(LocalDir(str(sweep / name)))
            assert rows[name][9:] == [str(run.step), f"{run.best('eval_loss')[0]:.4f}", f"{run.best('eval_cer')[0]:.4f}"]
        assert any(line.startswith("RunPod billed $") and "for 2 of 3 experiments" in line for line in lines)
        assert [r["route"] for r in api.calls("GET", "/v2/billing")] == ["/v2/billing/pods"]
        assert api.calls("GET", "/v2/billing")[0]["query"]["bucketSize"] == ["day"]

        api.fail("GET /v2/billing/pods", 503, message="billing is down")  # retried, then said, table still shown
        result = volume_cli("fleet", "status", "--db", db, "--volume-id", "vol-eu1", "--billing",
                     env={"RETRY_WAIT_SECONDS": "0"})
        assert result.returncode == 0 and "RunPod billing not readable" not in result.stdout
        for _ in range(3):
            api.fail("GET /v2/billing/pods", 503, message="billing is down")
        result = volume_cli("fleet", "status", "--db", db, "--volume-id", "vol-eu1", "--billing",
                     env={"RETRY_WAIT_SECONDS": "0"})
        assert result.returncode == 0 and "RunPod billing not readable: RunPod API, read pod billing: HTTP 503" \
            in result.stdout and "billed" not in result.stdout.splitlines()[0]
    finally:
        api.pods.clear()
    assert files_holding(tmp_path, volume_server) == []


def files_holding(directory, volume_server) -> list[str]:
    """The files under `directory` (the plots, the fleet's database, HOME) that hold a key."""
    keys = [k.encode() for k in (volume_server.access_key, volume_server.secret_key, API_KEY)]
    return [str(p) for p in directory.rglob("*") if p.is_file() and any(k in p.read_bytes() for k in keys)]


@pytest.mark.parametrize("status, since, expected", [
    ({"status": "finished", "exit_code": 0, "step": 6, "max_steps": 6}, 0,
     ("finished", "run_status.json: finished at step 6/6, exit 0")),
    ({"status": "early_stopped", "exit_code": 0, "step": 40, "max_steps": 500}, 0,
     ("early_stopped", "run_status.json: early stopping at step 40/500, exit 0")),
    ({"status": "preempted", "exit_code": 143, "step": 12}, 0,
     ("preempted", "run_status.json: stopped by a signal after saving a checkpoint at step 12, exit 143")),
    ({"status": "budget_stopped", "exit_code": 3, "step": 30}, None,
     ("budget_stopped", "run_status.json: the experiment's own budget_cap at step 30, exit 3")),
    ({"status": "failed", "exit_code": None, "step": 3}, 0, ("failed", "run_status.json: failed at step 3")),
    ({"status": "running", "step": 3}, 0, None),                   # killed before it could say how it ended
    ({"status": "finished", "exit_code": 0}, 2_000_000_000, None),  # an earlier attempt's file
    ({"status": "finished", "exit_code": 0, "updated_at": "yesterday"}, 0, None),
    ("{torn", 0, None),
    (None, 0, None),
])
def test_the_fleets_outcome_from_the_runs_own_status(status, since, expected, volume_server, api, monkeypatch, tmp_path):
    """recorded_outcome: the same answer from the volume through S3 and from a local directory."""
    for key, value in volume_server.env().items():
        monkeypatch.setenv(key, value)
    if isinstance(status, dict):
        raw = json.dumps({"updated_at": "2026-12-01T12:00:00Z", **status}).encode()
    else:
        raw = status.encode() if status else None
    local = tmp_path / "checkpoints" / "outcome"
    local.mkdir(parents=True)
    if raw is not None:
        (local / "run_status.json").write_bytes(raw)
        volume_server.client().put_object(Bucket="vol-eu1", Key="checkpoints/outcome/run_status.json", Body=raw)
    try:
        volume = open_volume("vol-eu1", Api(API_KEY, base=api.url)).sub("checkpoints")
        for root in (volume, LocalDir(str(local.parent))):
            reading = recorded_outcome(root, "outcome", since)
            assert (reading and (reading.outcome.value, reading.why)) == expected
    finally:
        volume_server.client().delete_object(Bucket="vol-eu1", Key="checkpoints/outcome/run_status.json")


@pytest.mark.parametrize("env, volume, message", [
    ({}, "vol-tx3", "--volume-id vol-tx3: its data center US-TX-3 has no S3 API (RunPod offers it in EU-CZ-1, "),
    ({}, "vol-nope", "--volume-id vol-nope: no such network volume in this account"),
    ({"RUNPOD_S3_ACCESS_KEY": "", "RUNPOD_S3_SECRET_KEY": ""}, "vol-eu1",
     "no S3 API key: export RUNPOD_S3_ACCESS_KEY (user_...) and RUNPOD_S3_SECRET_KEY (rps_...) from RunPod console"),
    ({"RUNPOD_S3_SECRET_KEY": ""}, "vol-eu1", "RUNPOD_S3_SECRET_KEY is not set (the other half of the S3 API key is)"),
    ({"RUNPOD_S3_SECRET_KEY": "rps_not-the-secret"}, "vol-eu1",
     "--volume-id vol-eu1: the S3 API refused the key from RUNPOD_S3_ACCESS_KEY/RUNPOD_S3_SECRET_KEY (403): "),
    ({"RUNPOD_S3_ACCESS_KEY": "user_nobody"}, "vol-eu1", "--volume-id vol-eu1: the S3 API refused the key from RUNPOD_S3_"),
    ({"RUNPOD_API_KEY": ""}, "vol-eu1", "RUNPOD_API_KEY is not set"),
])
def test_refusals_are_one_line_and_change_nothing(env, volume, message, volume_cli, tmp_path, volume_server):
    plot = tmp_path / "refused.png"
    result = volume_cli("compare", "--volume-id", volume, "--plot", str(plot), env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {message}"), result.stderr
    assert not plot.exists()


def test_keys_from_an_aws_profile_or_the_aws_variables(sweep, volume_cli, tmp_path, volume_server):
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(f"[runpod]\naws_access_key_id = {volume_server.access_key}\n"
                           f"aws_secret_access_key = {volume_server.secret_key}\n")
    no_runpod_keys = {"RUNPOD_S3_ACCESS_KEY": "", "RUNPOD_S3_SECRET_KEY": ""}
    result = volume_cli("compare", "--volume-id", "vol-eu1", env={**no_runpod_keys, "AWS_PROFILE": "runpod",
                                                            "AWS_SHARED_CREDENTIALS_FILE": str(credentials)})
    assert result.returncode == 0 and len(table(result.stdout)) == SWEEP, result.stderr
    result = volume_cli("compare", "--volume-id", "vol-eu1", env={**no_runpod_keys, "AWS_PROFILE": "missing",
                                                            "AWS_SHARED_CREDENTIALS_FILE": str(credentials)})
    assert result.returncode == 2 and "The config profile (missing) could not be found" in result.stderr
    result = volume_cli("compare", "--volume-id", "vol-eu1", env={**no_runpod_keys,
                                                            "AWS_ACCESS_KEY_ID": volume_server.access_key,
                                                            "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert result.returncode == 2 and "refused the key from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in result.stderr


def test_outputs_and_volume_are_one_or_the_other(volume_cli, tmp_path):
    result = volume_cli("compare", "--outputs", str(tmp_path), "--volume-id", "vol-eu1")
    assert result.returncode == 2 and "not allowed with argument" in result.stderr
