"""The fleet: a simulated sweep of 8 experiment branches on a local fake of RunPod's API whose pods live
on a clock this test controls (hours pass in milliseconds): capacity refusals, spot preemptions at
random moments, a run that always fails, real prices; a controller killed mid-sweep and restarted."""

from __future__ import annotations

import random

import pytest
from experiment_repo import Out, experiment, git, in_process, make_repo, tree_files
from fake_runpod import API_KEY, FakeRunPod, Fate

from training.experiment.fleet import Fleet, FleetOptions, status_table
from training.experiment.fleet_queue import Queue
from training.experiment.gitops import Git
from training.runpod.client import Api

GPUS = ["NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"]  # no H100 in the volume's data center: 4090 next
DOOMED = "s-lr4e-4-r16"  # its runs always crash


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def repo(module_mktemp):
    work = make_repo(module_mktemp("fleet"), tree_files())
    made = experiment(work, "sweep", "s", "--grid", "learning_rate=1e-4,2e-4,3e-4,4e-4", "r=8,16")
    assert made.returncode == 0, made.stderr
    names = git(work, "branch", "--list", "s-*", "--format=%(refname:short)").split()
    git(work, "push", "-q", "origin", *names)
    assert len(names) == 8 and DOOMED in names
    return work, names


def fates(seed: int):
    """Spot pods are preempted 40% of the time at a random moment; DOOMED always crashes; the rest
    finish (one in five by early stopping) after 20 to 60 minutes of training."""
    chance = random.Random(seed)

    def fate(pod) -> Fate:
        after = chance.uniform(1200, 3600)
        if pod["name"] == f"exp-{DOOMED}":
            return Fate("failed", after=chance.uniform(60, 300))
        if pod["_spot"] and chance.random() < 0.4:
            return Fate("preempted", after=chance.uniform(60, after))
        return Fate("early_stopped" if chance.random() < 0.2 else "finished", after=after)

    return fate


@pytest.fixture
def sweep(repo, tmp_path, monkeypatch, capsys):
    work, names = repo
    clock = Clock()
    monkeypatch.chdir(work)
    monkeypatch.setenv("RETRY_WAIT_SECONDS", "0")
    with FakeRunPod(max_requests=20_000, clock=clock) as fake:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", fake.url)  # the SDK's GraphQL spot call reads it
        fake.fate = fates(seed=13)
        for _ in range(4):  # spot sold out now and then: the next GPU type, then a wait
            fake.fail("graphql podRentInterruptable", 200, message="There are no instances currently available")

        def controller(**options) -> Fleet:
            defaults = dict(max_pods=3, escalate_after=2, max_attempts=3, bid=0.35, retry_wait_s=300, poll_s=60,
                            volume_id="vol-eu1", launch={"wandb_secret": "wandb_key"})
            queue = Queue(str(tmp_path / "fleet.sqlite"), clock=clock)
            return Fleet(queue, Api(API_KEY, base=fake.url, log_quiet_s=0.02, sleep=clock.sleep), Git.here(), FleetOptions(**{**defaults, **options}),
                         Out(), clock=clock)

        queue = Queue(str(tmp_path / "fleet.sqlite"), clock=clock)
        queue.add(names, 0, GPUS, spot=True)
        yield fake, clock, controller, names
    assert fake.server_errors == [] and fake.duplicates == []


def drive(fleet: Fleet, clock: Clock, fake: FakeRunPod, passes: int) -> int:
    for done in range(passes):
        if not fleet.step():
            return done
        assert len(fake.alive()) <= 3
        clock.sleep(fleet.options.poll_s)
    return passes


def test_a_sweep_of_8_runs_itself_with_3_pods_and_survives_a_controller_restart(sweep):
    fake, clock, controller, names = sweep
    first = controller()
    assert drive(first, clock, fake, 25) == 25  # killed mid-sweep: its pods keep running
    alive_before = {p["name"] for p in fake.alive()}
    assert alive_before, "the first controller left no pod running to adopt"
    created_before = fake.created

    second = controller()  # a new process: the same SQLite file, RunPod's pods found by name
    second.step()
    assert {p["name"] for p in fake.alive()} >= alive_before and fake.duplicates == []
    passes = drive(second, clock, fake, 2000)
    assert passes < 2000, "the sweep never ended"

    rows = {row["name"]: row for row in second.queue.rows()}
    assert set(rows) == set(names) and fake.most_alive == 3 and fake.alive() == []
    assert {row["state"] for name, row in rows.items() if name != DOOMED} <= {"finished", "early_stopped"}
    doomed = rows[DOOMED]
    assert doomed["state"] == "dead" and doomed["failures"] == 3 and doomed["reason"].startswith("exit 1:")
    assert "CUDA error: an illegal memory access" in doomed["last_lines"]
    escalated = [row for row in rows.values() if row["on_demand"]]
    assert escalated and all(row["preemptions"] >= 2 for row in escalated)
    assert any(row["pod_kind"] == "on-demand" and row["state"] != "dead" for row in escalated)
    assert any("no capacity on" in line for line in first.out.lines + second.out.lines)

    # Money is data: never less than RunPod bills, at most one poll of every attempt more.
    total, billed = second.total_usd(), fake.billed_usd()
    attempts = sum(row["attempts"] for row in rows.values())
    assert billed <= total <= billed + attempts * 60 * 1.64 / 3600
    launches = fake.created
    assert launches == attempts + 0 and launches > created_before
    preemptions = sum(row["preemptions"] for row in rows.values())
    assert preemptions == fake.outcomes["preempted"] and sum(row["failures"] for row in rows.values()) == 3
    print(f"\nsweep: {launches} launches, {preemptions} preemptions, {len(escalated)} escalations to on-demand, "
          f"${total:.2f} counted for ${billed:.2f} billed, {clock.now - 1_000_000:.0f} simulated seconds")

    table = status_table(second.queue.rows(), {}, budget=20.0)
    assert table[0].split()[:3] == ["experiment", "state", "attempts"] and len(table) >= 10
    assert table[9] == f"fleet total ${total:.2f}, budget left ${20.0 - total:.2f} of $20.00"
    assert any(line.startswith(f"{DOOMED} dead: exit 1:") for line in table)


def test_the_sweep_budget_stops_every_pod_at_the_cap(sweep):
    fake, clock, controller, names = sweep
    fleet = controller(budget_usd=1.5)
    fake.fail("GET /v2/pods", 502, body="<html>bad gateway</html>")  # a pass that cannot see RunPod: skipped
    fake.fail("GET /v2/pods", 502, body="<html>bad gateway</html>")
    fake.fail("GET /v2/pods", 502, body="<html>bad gateway</html>")
    assert fleet.run(sleep=clock.sleep) == 0
    rows = fleet.queue.rows()
    assert fake.alive() == []  # every pod stopped, each got SIGTERM and saved
    assert {row["state"] for row in rows} <= {"finished", "early_stopped", "dead", "stopped"}
    assert any(row["state"] == "stopped" for row in rows)
    # Stopped when one more pass of the running pods would reach the budget: RunPod bills no more than it.
    total, one_pass = fleet.total_usd(), 3 * 60 * 1.64 / 3600
    assert fake.billed_usd() <= total <= 1.5 and total >= 1.5 - one_pass
    assert any(line.startswith("warning: the fleet has spent") for line in fleet.out.lines)
    assert any("list pods: HTTP 502" in line and "trying again in 60s" in line for line in fleet.out.lines)
    assert fleet.out.lines[-1].startswith("fleet: ") and "of $1.50" in fleet.out.lines[-1]
    assert fleet.step() is False and fake.created == sum(row["attempts"] for row in rows)  # nothing more launched


def test_queue_cli_and_two_claims_of_one_experiment(repo, tmp_path, monkeypatch, capsys):
    work, names = repo
    cli = in_process(monkeypatch, capsys)
    db = str(tmp_path / "q.sqlite")
    result = cli(work, "queue", "add", names[0], names[1], "--priority", "5", "--gpu", ",".join(GPUS), "--db", db)
    assert result.returncode == 0, result.stderr
    result = cli(work, "queue", "add", names[0], "--db", db)
    assert result.returncode == 2 and f"already in the queue: {names[0]} (queued)" in result.stderr
    result = cli(work, "queue", "list", "--db", db)
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [[names[0], "queued"], [names[1], "queued"]]
    one, two = Queue(db), Queue(db)  # two controllers on one file
    assert one.claim(1e12, "one", 600)["name"] == names[0] and two.claim(1e12, "two", 600)["name"] == names[1]
    assert one.claim(1e12, "one", 600) is None
    assert not two.renew(names[0], "two", 2e12) and one.renew(names[0], "one", 2e12)  # a lease is its owner's
    result = cli(work, "queue", "remove", names[0], "--db", db)
    assert result.returncode == 2 and "is launching on a pod" in result.stderr
    result = cli(work, "fleet", "status", "--db", db)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "fleet total $0.00"
    open(tmp_path / "bad.sqlite", "w").write("not sqlite")
    result = cli(work, "queue", "list", "--db", str(tmp_path / "bad.sqlite"))
    assert result.returncode == 2 and "not a readable SQLite file" in result.stderr


def test_fleet_run_once_and_fleet_status_through_the_cli(repo, tmp_path, monkeypatch, capsys):
    work, names = repo
    cli = in_process(monkeypatch, capsys)
    db = str(tmp_path / "cli.sqlite")
    with FakeRunPod() as fake:
        env = {"RUNPOD_API_BASE_URL": fake.url, "RUNPOD_API_KEY": API_KEY, "RETRY_WAIT_SECONDS": "0"}
        assert cli(work, "queue", "add", *names[:3], "--on-demand", "--db", db).returncode == 0
        command = ["fleet", "run", "--max-pods", "2", "--once", "--volume-id", "vol-eu1", "--wandb-secret", "wandb_key",
                   "--budget", "5", "--db", db]
        result = cli(work, *command, env=env)
        assert result.returncode == 0, result.stderr
        assert [p["name"] for p in fake.pods.values()] == [f"exp-{names[0]}", f"exp-{names[1]}"]
        sent = fake.calls("POST", "/v2/pods")[0]["body"]
        assert sent["env"]["MAX_LIFETIME_S"] == "86400" and sent["env"]["IDLE_STOP_S"] == "1800"  # launch's too
        assert sent["mounts"] == {"network": [{"volumeId": "vol-eu1", "path": "/runpod_volume"}]}

        result = cli(work, *command, env=env)  # a second controller pass: adopts, launches no third pod
        assert result.returncode == 0 and len(fake.pods) == 2 and fake.duplicates == []
        run = tmp_path / "runs" / names[0]  # the volume, mounted here: the run's own files give its results
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text('{"step": 50, "eval_loss": 0.91, "eval_cer": 0.2}\n'
                                           '{"step": 100, "eval_loss": 0.62, "eval_cer": 0.11}\n')
        result = cli(work, "fleet", "status", "--db", db, "--outputs", str(tmp_path / "runs"))
        lines = result.stdout.splitlines()
        assert lines[1].split()[:9] == [names[0], "running", "1", "0", "NVIDIA", "GeForce", "RTX", "4090", "on-demand"]
        assert lines[1].split()[-3:] == ["100", "0.6200", "0.1100"] and lines[2].split()[-3:] == ["-", "-", "-"]
        assert lines[-1].startswith("fleet total $") and "budget left $" in lines[-1]
        assert [line.split()[1] for line in lines[1:4]] == ["running", "running", "queued"]


def test_a_pod_whose_answer_holds_no_rate_is_billed_at_the_price_launch_got(sweep):
    # Until a pass sees the pod listed with its rate, the sweep budget counts it at the bid (spot) or
    # the list price (on-demand): never free.
    fake, clock, controller, names = sweep
    fake.unpriced_creates = True
    fleet = controller()
    fleet.step()
    running = [row for row in fleet.queue.rows() if row["state"] == "running"]
    assert running
    for row in running:
        listed = fake.catalog[row["pod_gpu"]]["price"]["secure"]
        assert row["rate_usd_h"] == (0.35 if row["pod_kind"] == "spot" else listed), row
