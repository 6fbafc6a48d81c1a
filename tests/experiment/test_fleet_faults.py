"""The fleet against a RunPod that misbehaves as its documentation allows (tests/fake_runpod.py's fault
injector): log streams kept open, creates answered after the client gave up, a pod missing from a
listing, 409 on terminate, 5xx for several polls, 429 with Retry-After, two controllers on one
queue, a controller killed at every step of a pass. Each test names the failure it reproduces.
Then the invariants over many seeded random fault schedules (hypothesis), on a clock the test
controls: never two live pods per name, dollars at least what RunPod bills and at most one pass
more per pod, the budget never overshot by more than one pass per pod, no pod volume deleted,
every finished run recorded finished."""

from __future__ import annotations

import json
import random
import time

import pytest
from experiment_repo import Out, experiment, git, in_process, make_repo, tree_files
from fake_runpod import API_KEY, FakeRunPod, Fate
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from training.errors import EXIT_UNREACHABLE
from training.experiment import fleet as fleet_module
from training.experiment.fleet import LEASE_S, PARK_CHECK_S, Fleet, FleetOptions
from training.experiment.fleet_queue import DONE, Queue, QueueBusy
from training.experiment.gitops import Git
from training.outcome import RunOutcome
from training.run_files import LocalDir
from training.runpod.client import Api
from training.timestamps import UTC_FORMAT

H100, RTX = "NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"  # no H100 in the volume's data center
CHECKED: dict = {}  # launch's checks of the branches, shared by every controller of this module
START = 1_000_000.0


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def repo(module_mktemp):
    work = make_repo(module_mktemp("faults"), tree_files())
    made = experiment(work, "sweep", "f", "--grid", "r=8,16,32")
    assert made.returncode == 0, made.stderr
    names = git(work, "branch", "--list", "f-*", "--format=%(refname:short)").split()
    git(work, "push", "-q", "origin", *names)
    return work, sorted(names)


class World:
    """A fake RunPod on a test clock, a queue file, and controllers made on demand."""

    def __init__(self, fake: FakeRunPod, clock: Clock, db: str, names: list[str]):
        self.fake, self.clock, self.db, self.names = fake, clock, db, names

    def api(self, **settings) -> Api:
        return Api(API_KEY, base=self.fake.url, log_quiet_s=0.02, sleep=self.clock.sleep, **settings)

    def fleet(self, api=None, runs=None, **options) -> Fleet:
        defaults = dict(max_pods=2, escalate_after=2, max_attempts=3, max_preemptions=4, bid=None, retry_wait_s=300,
                        poll_s=60, volume_id="vol-eu1", launch={"wandb_secret": "wandb_key"})
        return Fleet(Queue(self.db, clock=self.clock), api or self.api(), Git.here(),
                     FleetOptions(**{**defaults, **options}), Out(), clock=self.clock, checked=CHECKED, runs=runs)

    def queue(self, names=None, gpus=(RTX,), spot=False) -> None:
        Queue(self.db, clock=self.clock).add(list(names or self.names), 0, list(gpus), spot=spot)

    def drive(self, fleet: Fleet, passes: int = 400) -> int:
        for done in range(passes):
            if not fleet.step():
                return done
            assert self.fake.most_alive_per_name <= 1, "two live pods for one experiment"
            self.clock.sleep(max(fleet.options.poll_s, fleet.wait_s))
        raise AssertionError("the sweep never ended")


@pytest.fixture
def world(repo, tmp_path, monkeypatch):
    work, names = repo
    monkeypatch.chdir(work)
    monkeypatch.setenv("RETRY_WAIT_SECONDS", "0")
    clock = Clock()
    with FakeRunPod(max_requests=50_000, clock=clock) as fake:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", fake.url)  # the SDK's GraphQL spot call reads it
        yield World(fake, clock, str(tmp_path / "fleet.sqlite"), names)
    assert fake.server_errors == []


def utc_iso(epoch: float) -> str:
    return time.strftime(UTC_FORMAT, time.gmtime(epoch))


def states(fleet: Fleet) -> dict[str, str]:
    return {row["name"]: row["state"] for row in fleet.queue.rows()}


# --- 1. the log stream, kept open ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["open", "keepalive"])
def test_a_log_stream_kept_open_is_read_to_its_quiet_end(world, mode):
    # Before: requests raises ConnectionError (not ReadTimeout) when a streamed read times out, so
    # every read of RunPod's open stream failed after 3 tries; Accept said application/json.
    world.fake.log_mode = mode
    pod = world.fake.add_pod("exp-x")
    world.fake.pods[pod]["_log"] = [f"line {i}" for i in range(30)] + ["run-outcome: outcome=finished exit=0 step=5"]
    started = time.monotonic()
    lines = Api(API_KEY, base=world.fake.url, log_quiet_s=0.2, log_deadline_s=5).log_tail(pod, 500)
    assert lines[-1].startswith("run-outcome: outcome=finished") and len(lines) == 31
    assert time.monotonic() - started < 2  # keep-alive comments do not hold the reader
    assert world.fake.requests[-1]["accept"] == "text/event-stream"


@pytest.mark.parametrize("mode", ["open", "keepalive"])
def test_a_finished_spot_run_read_through_an_open_stream_is_finished(world, mode):
    # Before: the unreadable stream made a finished spot run "preempted" (relaunched, billed again).
    world.fake.log_mode = mode
    world.fake.fate = lambda pod: Fate("finished", after=600)
    world.queue(world.names[:1], spot=True)
    fleet = world.fleet(bid=0.35)
    world.drive(fleet)
    assert states(fleet) == {world.names[0]: "finished"} and world.fake.created == 1


# --- 3. never two pods for one experiment ----------------------------------------------------------

def test_a_create_answered_after_the_clients_timeout_rents_no_second_pod(world):
    # Before: the lost answer was "no capacity on this GPU": the next GPU type got a second pod.
    world.fake.fate = lambda pod: Fate("finished", after=900)
    world.fake.late("POST /v2/pods", 1.0)  # RunPod creates it, and answers after the client gave up
    world.queue(world.names[:1], gpus=(RTX, "NVIDIA A100 80GB PCIe"))
    fleet = world.fleet(api=world.api(timeout=0.3))
    fleet.step()
    row = fleet.queue.row(world.names[0])
    assert row["state"] == "unconfirmed" and row["rate_usd_h"] == 0.69 and world.fake.created == 1
    assert any("launch unconfirmed" in line for line in fleet.out.lines)
    world.drive(fleet)
    assert world.fake.created == 1 and world.fake.duplicates == []
    assert states(fleet) == {world.names[0]: "finished"}
    assert world.fake.billed_usd() <= fleet.total_usd() <= world.fake.billed_usd() + 60 * 0.69 / 3600 + 1e-9


def test_a_create_lost_before_it_was_made_is_launched_again(world):
    world.fake.fate = lambda pod: Fate("finished", after=900)
    world.fake.fail("POST /v2/pods", 502, times=1)  # a gateway's 502: was it made? RunPod says nothing
    world.queue(world.names[:1])
    fleet = world.fleet()
    fleet.step()
    assert fleet.queue.row(world.names[0])["state"] == "unconfirmed" and world.fake.created == 0
    world.drive(fleet)
    assert world.fake.created == 1 and states(fleet) == {world.names[0]: "finished"}
    assert any("no pod exp-" in line and "appeared" in line for line in fleet.out.lines)
    assert fleet.total_usd() == pytest.approx(world.fake.billed_usd(), abs=60 * 0.69 / 3600)  # the lost one: $0


def test_a_pod_missing_from_one_listing_is_asked_for_by_id(world):
    # Before: counted preempted and relaunched: two pods.
    world.fake.fate = lambda pod: Fate("finished", after=1800)
    world.queue(world.names[:1])
    fleet = world.fleet()
    fleet.step()
    [pod] = world.fake.pods
    world.clock.sleep(300)
    world.fake.hide(pod)
    fleet.step()
    assert fleet.queue.row(world.names[0])["state"] == "running" and world.fake.created == 1
    assert world.fake.calls("GET", f"/v2/pods/{pod}")
    world.drive(fleet)
    assert world.fake.created == 1 and states(fleet) == {world.names[0]: "finished"}


def test_two_controllers_and_a_launch_slower_than_the_old_grace_rent_one_pod(world):
    # Before: the second controller saw a launching row with no pod after LAUNCH_GRACE_S (120 s),
    # queued it again and launched it: two pods. A claim's lease is now its owner's.
    world.fake.fate = lambda pod: Fate("finished", after=900)
    world.queue(world.names[:1])
    first, second = world.fleet(), world.fleet()
    create = first.api.create_pod

    def slow_create(body):  # placing and creating took 200 s, meanwhile the other controller passes
        world.clock.sleep(200)
        assert second.step() is True
        return create(body)

    first.api.create_pod = slow_create
    first.step()
    for _ in range(40):
        for controller in (second, first):
            controller.step()
            world.clock.sleep(30)
    assert world.fake.created == 1 and world.fake.duplicates == [] and states(first) == {world.names[0]: "finished"}


class Killed(BaseException):
    """SIGKILL, as far as the controller can tell: nothing after it runs."""


class KillingApi:
    """The real client, killed at its `at`-th call: before the request goes out, or after its answer came."""

    def __init__(self, api: Api, at: int, after: bool):
        self.api, self.at, self.after, self.calls = api, at, after, 0

    def __getattr__(self, name):
        method = getattr(self.api, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.at and not self.after:
                raise Killed(name)
            answer = method(*args, **kwargs)
            if self.calls == self.at:
                raise Killed(name)
            return answer

        return call


@pytest.mark.parametrize("after", [False, True], ids=["before-request", "after-answer"])
def test_a_controller_killed_at_each_step_of_a_pass(world, after):
    # Every API call of the sweep's passes is in turn the last one a controller makes: a new one
    # (another process: another lease owner) carries on from the file and RunPod's pods.
    world.fake.fate = lambda pod: Fate("preempted" if pod["_spot"] else "finished", after=600)
    world.queue(world.names[:2], spot=True)
    kills, at = 0, 1
    while True:
        fleet = world.fleet(api=KillingApi(world.api(), at, after), bid=0.35, escalate_after=1)
        try:
            world.drive(fleet)
            break
        except Killed:
            kills += 1
            at += 1
            world.clock.sleep(30)
    assert kills >= 10 and world.fake.duplicates == [] and world.fake.most_alive_per_name <= 1
    assert set(states(fleet).values()) == {"finished"}
    billed = world.fake.billed_usd()
    # A killed pass's pods are counted up to the next controller's first pass: 30 s more, each.
    assert billed <= fleet.total_usd() <= billed + world.fake.created * (60 + 30 + LEASE_S) * 0.69 / 3600


# --- 4. the budget, whatever fails ------------------------------------------------------------------

def test_a_409_on_terminate_does_not_stop_the_budget_check(world):
    # Before: one 409 on terminating an ended pod aborted every pass before the budget check, and
    # the other pod billed on past the budget.
    world.fake.fate = lambda pod: Fate("finished", after=300 if pod["name"].endswith(world.names[0]) else 10 ** 6)
    world.fake.fail("DELETE /v2/pods/*", 409, message="action 'terminate' is not valid for an EXITED pod", times=1000)
    world.queue(world.names[:2])
    fleet = world.fleet(budget_usd=0.5)
    world.drive(fleet)
    assert states(fleet) == {world.names[0]: "finished", world.names[1]: "stopped"}
    assert world.fake.billed_usd() <= fleet.total_usd() <= 0.5
    assert any("409" in line and "next pass tries again" in line for line in fleet.out.lines)


def test_5xx_for_several_polls_counts_every_pod_as_billing_and_relaunches_nothing(world):
    world.fake.fate = lambda pod: Fate("finished", after=1200)
    world.queue(world.names[:2])
    fleet = world.fleet(budget_usd=0.6)
    fleet.step()
    world.fake.fail("GET /v2/pods", 503, times=3 * 6)  # six passes without a listing (3 tries each)
    world.drive(fleet)
    assert world.fake.created == 2 and world.fake.duplicates == []
    assert world.fake.billed_usd() <= fleet.total_usd() <= 0.6


def test_runpod_unreachable_past_the_limit_exits_75_and_a_restart_recovers(world):
    world.fake.fate = lambda pod: Fate("finished", after=3600)
    world.queue(world.names[:1])
    fleet = world.fleet(unreachable_s=600)
    fleet.step()
    world.fake.fail("GET /v2/pods", 503, times=10 ** 6)
    assert fleet.run(sleep=world.clock.sleep) == EXIT_UNREACHABLE
    assert "has not answered for" in fleet.out.lines[-1] and "adopts them" in fleet.out.lines[-1]
    world.fake.failures.clear()
    again = world.fleet()
    assert again.run(sleep=world.clock.sleep) == 0
    assert world.fake.created == 1 and states(again) == {world.names[0]: "finished"}


def test_429_waits_what_retry_after_asks(world):
    world.queue(world.names[:1])
    fleet = world.fleet()
    world.fake.fail("GET /v2/pods", 429, retry_after=7)
    before = world.clock()
    fleet.step()
    assert world.clock() - before >= 7 and fleet.queue.row(world.names[0])["state"] == "running"
    world.fake.fail("GET /v2/pods", 429, retry_after=600)  # longer than a retry waits: the next pass does
    fleet.step()
    assert fleet.wait_s == 600 and any("asks to wait 600s" in line for line in fleet.out.lines)


def test_an_adopted_pod_is_billed_from_its_own_creation(world):
    world.fake.fate = lambda pod: Fate("finished", after=600)
    world.queue(world.names[:1])
    world.fake.add_pod(f"exp-{world.names[0]}", uptime=7200, cost=0.69)  # started by hand two hours ago
    fleet = world.fleet()
    fleet.step()
    assert fleet.total_usd(world.clock()) >= world.fake.billed_usd() > 2 * 0.69


# --- 6, 7, 8. pod volumes, endless relaunches, parked pods ------------------------------------------

def test_checkpoints_on_a_pod_volume_are_never_deleted(world):
    # Before: a stopped exp-NAME pod with a pod volume was DELETEd in one pass, with no message.
    world.fake.fate = lambda pod: Fate("finished", after=600)
    world.queue(world.names[:1])
    world.fake.add_pod(f"exp-{world.names[0]}", status="EXITED", volume_gb=50)
    fleet = world.fleet()
    world.drive(fleet)
    assert world.fake.volumes_deleted == [] and states(fleet) == {world.names[0]: "finished"}
    assert any("on its own 50 GB volume: left stopped, not deleted" in line for line in fleet.out.lines)


def test_dead_man_stops_count_as_failures(world):
    world.fake.fate = lambda pod: Fate("deadman", after=600)
    world.queue(world.names[:1])
    fleet = world.fleet(retry_wait_s=60)
    world.drive(fleet)
    row = fleet.queue.row(world.names[0])
    assert (row["state"], row["failures"], row["preemptions"]) == ("dead", 3, 0)
    assert "dead-man switch stopped the pod (lifetime_43200s_reached)" in row["reason"]


def test_a_run_stopped_every_time_is_not_relaunched_forever(world):
    # Before: a run stopped every time relaunched 140 times in 72 h.
    world.fake.fate = lambda pod: Fate("silent", after=600)  # ends without a word, every time
    world.queue(world.names[:1])
    fleet = world.fleet(max_preemptions=4)
    world.drive(fleet)
    row = fleet.queue.row(world.names[0])
    assert (row["state"], row["failures"], row["preemptions"], world.fake.created) == ("dead", 0, 5, 5)
    assert "--max-preemptions" in row["reason"] and "outcome unknown" in row["reason"]


def test_an_unreadable_log_is_unknown_and_no_failure(world):
    finished: set[str] = set()

    def fate(pod):
        return Fate("finished", after=60 if pod["name"] in finished else 600)

    world.fake.fate = fate
    world.queue(world.names[:1])
    fleet = world.fleet()
    world.fake.fail("GET /v2/pods/*/logs", 500, times=3)
    fleet.step()
    finished.add(f"exp-{world.names[0]}")
    world.drive(fleet)
    row = fleet.queue.row(world.names[0])
    assert (row["state"], row["failures"], row["preemptions"], world.fake.created) == ("finished", 0, 1, 2)
    assert [outcome for _, _, outcome in fleet.decisions] == [RunOutcome.UNKNOWN, RunOutcome.FINISHED]


def test_the_runs_own_status_on_the_volume_decides_before_the_log(world, tmp_path):
    # The run says how it ended in run_status.json on the network volume; its pod's log is unreadable.
    world.fake.fate = lambda pod: Fate("early_stopped", after=600)
    world.queue(world.names[:2])
    fleet = world.fleet(runs=LocalDir(str(tmp_path)))
    fleet.step()
    for name in world.names[:2]:
        (tmp_path / name).mkdir()
    # One run wrote how it ended after its launch; the other's file is an earlier attempt's.
    written = {world.names[0]: world.clock() + 300, world.names[1]: world.clock() - 3600}
    for name, at in written.items():
        (tmp_path / name / "run_status.json").write_text(json.dumps(
            {"status": "early_stopped", "exit_code": 0, "step": 40, "max_steps": 500, "updated_at": utc_iso(at)}))
    world.fake.fail("GET /v2/pods/*/logs", 500, times=1000)
    world.drive(fleet)
    rows = {row["name"]: row for row in fleet.queue.rows()}
    assert rows[world.names[0]]["state"] == "early_stopped" and rows[world.names[0]]["preemptions"] == 0
    assert any("run_status.json: early stopping at step 40/500" in line for line in fleet.out.lines)
    # The other attempt's outcome is unknown (its file is older than its launch): relaunched, no failure.
    assert rows[world.names[1]]["failures"] == 0 and rows[world.names[1]]["preemptions"] >= 1


def test_a_dead_man_stop_stays_a_failure_when_the_run_says_preempted(world, tmp_path):
    world.fake.fate = lambda pod: Fate("deadman", after=600)
    world.queue(world.names[:1])
    fleet = world.fleet(runs=LocalDir(str(tmp_path)), max_attempts=1)
    fleet.step()
    (tmp_path / world.names[0]).mkdir()
    (tmp_path / world.names[0] / "run_status.json").write_text(json.dumps(
        {"status": "preempted", "exit_code": 143, "step": 7, "updated_at": utc_iso(world.clock() + 300)}))
    world.drive(fleet)
    row = fleet.queue.row(world.names[0])
    assert (row["state"], row["failures"]) == ("dead", 1), row
    assert [outcome for _, _, outcome in fleet.decisions] == [RunOutcome.DEADMAN]


def test_a_parked_pod_is_ended_by_the_controller(world):
    # Before: a run that printed its end but could not stop its pod billed "running" for 24 h.
    world.fake.fate = lambda pod: Fate("finished", after=600, parked=True)
    world.queue(world.names[:1])
    fleet = world.fleet()
    passes = world.drive(fleet)
    assert states(fleet) == {world.names[0]: "finished"} and world.fake.alive() == []
    assert passes * 60 <= 600 + 30 + PARK_CHECK_S + 2 * 60
    assert any("still up after its run ended" in line for line in fleet.out.lines)


# --- 10. spot may be gone ----------------------------------------------------------------------------

def test_spot_gone_escalates_to_on_demand_at_once(world):
    world.fake.spot_removed = True
    world.fake.fate = lambda pod: Fate("finished", after=600)
    world.queue(world.names[:1], spot=True)
    fleet = world.fleet(bid=0.35)
    world.drive(fleet)
    row = fleet.queue.row(world.names[0])
    assert (row["state"], row["pod_kind"], row["on_demand"]) == ("finished", "on-demand", 1)
    assert any("no longer rents spot pods: on-demand from now on" in line for line in fleet.out.lines)


def test_no_spot_capacity_escalates_after_k_passes_unless_spot_only(world):
    world.fake.spot_capacity = 0
    world.fake.fate = lambda pod: Fate("finished", after=600)
    world.queue(world.names[:1], spot=True)
    fleet = world.fleet(bid=0.35, escalate_after=2, retry_wait_s=60)
    world.drive(fleet)
    assert fleet.queue.row(world.names[0])["pod_kind"] == "on-demand"
    assert any("no spot pod to be had in 2 passes: on-demand from now on" in line for line in fleet.out.lines)


def test_spot_only_with_spot_gone_is_dead_with_the_reason(world):
    world.fake.spot_removed = True
    world.queue(world.names[:1], spot=True)
    fleet = world.fleet(bid=0.35, spot_only=True)
    world.drive(fleet)
    assert states(fleet) == {world.names[0]: "dead"} and world.fake.created == 0


# --- 5, 11, 12. the command line, the queue file ----------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["--budget", "-5"], ["--budget -5.0: must be a number between 0.01 and 100000, or 0 (no sweep budget)"]),
    (["--budget", "nan"], ["--budget nan: must be"]),
    (["--poll", "-1"], ["--poll -1.0: must be a number between 5 and 3600"]),
    (["--bid", "inf"], ["--bid inf: must be"]),
    (["--bid", "nan", "--max-pods", "0"], ["--max-pods 0: must be", "--bid nan: must be"]),
    (["--max-lifetime-hours", "nan"], ["--max-lifetime-hours nan: must be"]),
    (["--max-lifetime-hours", "-1"], ["--max-lifetime-hours -1.0: must be a number between 0.1 and 720"]),
    (["--max-lifetime-hours", "0"], ["--max-lifetime-hours 0.0: must be a number between 0.1 and 720"]),
    (["--idle-stop-minutes", "0.001"], ["--idle-stop-minutes 0.001: must be a number between 5 and 1440, or 0"]),
    (["--spot-only"], ["--spot-only needs --bid USD"]),
])
def test_fleet_run_checks_every_number_before_anything_changes(repo, tmp_path, monkeypatch, capsys, args, expected):
    work, names = repo
    cli = in_process(monkeypatch, capsys)
    db = tmp_path / "new" / "fleet.sqlite"
    argv = ["fleet", "run", "--max-pods", "2", "--volume-id", "vol-eu1", "--db", str(db)]
    result = cli(work, *argv, *args, env={"RUNPOD_API_KEY": API_KEY})
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == len(expected), result.stderr
    assert all(line.startswith(f"error: {want}") for line, want in zip(lines, expected)), lines
    assert not (tmp_path / "new").exists()  # no directory, no file, no row


def test_queue_add_checks_the_priority_before_the_file_is_made(repo, tmp_path, monkeypatch, capsys):
    work, names = repo
    cli = in_process(monkeypatch, capsys)
    db = tmp_path / "new" / "q.sqlite"
    result = cli(work, "queue", "add", names[0], "--priority", "99999999999999999999999", "--db", str(db))
    assert result.returncode == 2 and result.stderr.startswith("error: --priority 99999999999999999999999: must be")
    assert "Traceback" not in result.stderr and not (tmp_path / "new").exists()


def test_a_missing_wandb_secret_stops_the_fleet_before_the_first_claim(world):
    # Before: every W&B experiment was marked dead, each needing `queue add` again.
    world.queue()
    fleet = world.fleet(launch={})
    with pytest.raises(fleet_module.UserError, match="no --wandb-secret NAME was given"):
        fleet.run(once=True)
    assert set(states(fleet).values()) == {"queued"} and world.fake.created == 0


def test_a_locked_queue_is_a_warning_and_the_next_pass_carries_on(world):
    world.queue(world.names[:1])
    fleet = world.fleet()
    fleet.queue = Queue(world.db, clock=world.clock, lock_wait_s=0.1)
    other = Queue(world.db)
    other.db.execute("BEGIN IMMEDIATE")  # another writer holds the file
    with pytest.raises(QueueBusy, match="locked by another writer"):
        fleet.step()
    other.db.execute("COMMIT")
    fleet.step()
    assert fleet.queue.row(world.names[0])["state"] == "running" and world.fake.created == 1


def test_a_damaged_queue_file_is_one_line(repo, tmp_path, monkeypatch, capsys):
    work, names = repo
    cli = in_process(monkeypatch, capsys)
    db = tmp_path / "q.sqlite"
    assert cli(work, "queue", "add", *names, "--db", str(db)).returncode == 0
    Queue(str(db)).db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    page = 4096
    data[page + 8:2 * page] = bytes(random.Random(1).randrange(256) for _ in range(page - 8))  # the table's page
    db.write_bytes(bytes(data))
    for command in (["queue", "list"], ["fleet", "status"]):
        result = cli(work, *command, "--db", str(db))
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert "not a readable SQLite file, or a damaged one" in result.stderr and result.stdout == ""


# --- the invariants, over many seeded fault schedules ----------------------------------------------

FAULTS = st.one_of(
    st.tuples(st.just("list5xx"), st.integers(1, 6)),
    st.tuples(st.just("hide"), st.integers(0, 5)),
    st.tuples(st.just("lost_create"), st.sampled_from(["POST /v2/pods", "graphql podRentInterruptable"])),
    st.tuples(st.just("terminate409"), st.integers(1, 4)),
    st.tuples(st.just("action5xx"), st.integers(1, 3)),
    st.tuples(st.just("logs5xx"), st.just(3)),
    st.tuples(st.just("r429"), st.integers(1, 30)),
    st.tuples(st.just("kill"), st.integers(1, 8)),
    st.tuples(st.just("second"), st.just(0)),
    st.tuples(st.just("log_mode"), st.sampled_from(["open", "keepalive", "close"])),
)
SCHEDULES = st.fixed_dictionaries({
    "seed": st.integers(0, 2 ** 16),
    "budget": st.sampled_from([0.0, 0.4, 1.0, 2.5]),
    "spot": st.booleans(),
    "faults": st.lists(st.tuples(st.integers(0, 40), FAULTS), max_size=12),
})
TALLY = {"schedules": 0, "duplicates": 0, "worst_overshoot": 0.0, "outcomes": 0, "right": 0, "unknown": 0}
MAX_RATE = 0.69  # the 4090's list price; spot bids are below it


def fates(seed: int):
    chance, finished = random.Random(seed), set()

    def fate(pod) -> Fate:
        if pod["name"] in finished:  # a finished run relaunched ends at once, from its final/
            return Fate("finished", after=60)
        kind = chance.choice(["finished", "finished", "early_stopped", "budget_stopped", "failed", "preempted",
                              "deadman", "silent", "error"])
        if kind in ("finished", "early_stopped"):
            finished.add(pod["name"])
        return Fate(kind, after=chance.uniform(300, 2400), parked=chance.random() < 0.15)

    return fate


def simulate(world: World, schedule: dict) -> None:
    fake, clock = world.fake, world.clock
    fake.fate = fates(schedule["seed"])
    world.queue(spot=schedule["spot"])
    options = dict(budget_usd=schedule["budget"], bid=0.35 if schedule["spot"] else None, poll_s=120,
                   retry_wait_s=120, max_attempts=2, max_preemptions=3)
    faults: dict[int, list] = {}
    for at, fault in schedule["faults"]:
        faults.setdefault(at, []).append(fault)
    unreadable: set[str] = set()  # pods whose log the fault schedule made unreadable at some point
    fleet, longest, decisions = world.fleet(**options), 0.0, []
    for index in range(600):
        kill_at = None
        for kind, value in faults.get(index, []):
            if kind == "list5xx":
                fake.fail("GET /v2/pods", 502, times=value)
            elif kind == "hide" and fake.alive():
                fake.hide(fake.alive()[value % len(fake.alive())]["id"])
            elif kind == "lost_create":
                fake.late(value, None)
            elif kind == "terminate409":
                fake.fail("DELETE /v2/pods/*", 409, times=value)
            elif kind == "action5xx":
                fake.fail("POST /v2/pods/*/action", 503, times=value)
            elif kind == "logs5xx":
                fake.fail("GET /v2/pods/*/logs", 500, times=value)
                unreadable.update(fake.pods)
            elif kind == "r429":
                fake.fail("GET /v2/pods", 429, retry_after=value)
            elif kind == "kill":
                kill_at = value
            elif kind == "second":
                world.fleet(**options).step()
            elif kind == "log_mode":
                fake.log_mode = value
        if kill_at is not None:
            fleet.api = KillingApi(fleet.api, kill_at, after=bool(index % 2))
        began = clock()
        try:
            going = fleet.step()
        except Killed:
            decisions += fleet.decisions
            fleet, going = world.fleet(**options), True
        longest = max(longest, clock() - began)
        assert fake.most_alive_per_name <= 1, "two live pods for one experiment"
        if not going:
            break
        clock.sleep(max(fleet.options.poll_s, fleet.wait_s))
    else:
        raise AssertionError("the sweep never ended")
    decisions += fleet.decisions
    pass_s = options["poll_s"] + longest
    billed, counted = fake.billed_usd(), fleet.total_usd()
    assert fake.duplicates == [] and fake.volumes_deleted == []
    assert billed - 1e-9 <= counted <= billed + fake.created * MAX_RATE * pass_s / 3600 + 1e-9
    if schedule["budget"]:
        overshoot = billed - schedule["budget"]
        assert overshoot <= 2 * MAX_RATE * pass_s / 3600 + 1e-9  # one pass of each of the 2 pods
        TALLY["worst_overshoot"] = max(TALLY["worst_overshoot"], overshoot)
    rows = {row["name"]: row for row in fleet.queue.rows()}
    for name, row in rows.items():
        truths = {fake.truth.get(pod) for n, pod, _ in decisions if n == name}
        if truths & set(DONE):  # a run that finished is recorded finished (unless the budget cut its confirmation)
            assert row["state"] in DONE or (row["state"] == "stopped" and schedule["budget"]), row
    for name, pod, outcome in decisions:
        truth = fake.truth.get(pod)
        TALLY["outcomes"] += 1
        right = outcome.value == truth or (outcome is RunOutcome.UNKNOWN and (truth == "unknown" or pod in unreadable))
        TALLY["right"] += right
        TALLY["unknown"] += outcome is RunOutcome.UNKNOWN
        assert right, (name, pod, outcome, truth)
    TALLY["schedules"] += 1
    TALLY["duplicates"] += len(fake.duplicates)


def run_schedules(repo, tmp_path_factory, monkeypatch):
    work, names = repo
    monkeypatch.chdir(work)
    monkeypatch.setenv("RETRY_WAIT_SECONDS", "0")

    def one(schedule):
        clock = Clock()
        with FakeRunPod(max_requests=50_000, clock=clock) as fake:
            monkeypatch.setenv("RUNPOD_API_BASE_URL", fake.url)
            simulate(World(fake, clock, str(tmp_path_factory.mktemp("sim") / "fleet.sqlite"), names), schedule)
            assert fake.server_errors == []

    return one


def record_figures(record_property) -> None:
    """The figures of the schedules run so far, for the terminal's summary (tests/conftest.py)."""
    record_property("figures", f"fault schedules: {TALLY['schedules']} run, {TALLY['duplicates']} duplicate pods, "
                    f"worst budget overshoot ${TALLY['worst_overshoot']:.4f}, outcomes right "
                    f"{TALLY['right']}/{TALLY['outcomes']} ({TALLY['unknown']} unknown where the log was unreadable "
                    "or silent)")


SUITE = settings(max_examples=5, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SUITE
@given(schedule=SCHEDULES)
# Found by the slow run: a parked pod whose terminate got a 409 was left billing, its row finished.
@example(schedule={"seed": 140, "budget": 0.0, "spot": False, "faults": [(0, ("terminate409", 1))]})
def test_invariants_hold_over_seeded_fault_schedules(repo, tmp_path_factory, monkeypatch, record_property, schedule):
    run_schedules(repo, tmp_path_factory, monkeypatch)(schedule)
    record_figures(record_property)


@pytest.mark.slow
@settings(SUITE, max_examples=200)
@given(schedule=SCHEDULES)
def test_invariants_hold_over_many_more_fault_schedules(repo, tmp_path_factory, monkeypatch, record_property, schedule):
    run_schedules(repo, tmp_path_factory, monkeypatch)(schedule)
    record_figures(record_property)
