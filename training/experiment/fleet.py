"""`fleet run`: the controller that works the queue off on RunPod, and `fleet status`.

What it guarantees, whatever RunPod's API does (tests/experiment/test_fleet_faults.py checks them over many
seeded fault schedules):
- never two live pods for one experiment: before any create, a listing by name finds none; a create
  whose answer was lost leaves the row unconfirmed until listings settle it; a pod missing from one
  listing is asked for by id before it counts as gone; a claim is leased to one controller.
- the money: dollars count from just before a pod's create (an adopted pod: from its own creation)
  to the pass that saw it end, so at least what RunPod bills and at most one pass more per pod. The
  budget check runs every pass, counting every pod not known to have ended as billing up to now.
- how a run ended is read, never guessed: `outcome` asks its sources in order (the run's own
  run_status.json on the network volume when the controller can read it, the pod's outcome line
  through RunPod's log API, then the pod's state); when none knows, the outcome is unknown,
  and the run is relaunched (a finished run's relaunch ends at once, from its final/ on the volume).
- a pod's own volume (checkpoints) is never deleted: such a pod is stopped, not terminated.

One pass (`step`):
1. list the experiment pods (exp-NAME) and reconcile each active row with its pod; each row's errors
   stay that row's (a warning; the next pass tries again);
2. the budget: at 90% a warning; once the dollars counted plus one more pass of the running pods
   reach it, every pod is stopped (each saves on SIGTERM) and nothing more is launched;
3. launch the highest-priority queued experiments while fewer than max_pods run; on no capacity the
   next GPU type of the experiment, then a wait of retry_wait_s; spot escalates to on-demand after
   `escalate_after` preemptions or passes without spot capacity, or at once when spot is gone.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from training.cost import WARN_FRACTION
from training.errors import EXIT_OK, EXIT_UNREACHABLE, UserError
from training.experiment import launch as launching
from training.experiment.fleet_queue import ACTIVE, DONE, Queue, QueueBusy, attempt_usd, dollars
from training.experiment.runs import recorded_outcome
from training.outcome import RunOutcome
from training.outcome_line import TERMINAL, Reading, read
from training.run_files import Store
from training.runpod import client as runpod_client
from training.runpod.names import experiment_of_pod, pod_name
from training.table import hours_minutes, text_table

LOG_LINES = 20  # kept with a dead experiment
LOG_TAIL = 500  # lines of a pod's log read for its outcome line
LAUNCH_GRACE_S = 120  # an unconfirmed create is settled as never made after this long and 2 listings without it
LEASE_S = 600  # a claim's lease: renewed by its controller before each step of a launch
PARK_CHECK_S = 900  # how often a running pod's log is read for a run that ended on a pod still up


@dataclass
class FleetOptions:
    max_pods: int
    budget_usd: float = 0.0  # 0 = no sweep budget
    escalate_after: int = 2  # preemptions (or passes without spot capacity) before on-demand
    max_attempts: int = 3  # failures (dead-man stops included) before dead
    max_preemptions: int = 8  # relaunches after a stop or an unknown ending before dead
    bid: float | None = None  # spot bid per GPU-hour; None = the catalog's price for on-demand
    spot_only: bool = False  # never escalate to on-demand
    retry_wait_s: float = 300.0
    poll_s: float = 60.0
    unreachable_s: float = 1800.0  # RunPod unreachable this long: the controller exits EXIT_UNREACHABLE
    volume_id: str | None = None
    launch: dict | None = None  # the rest of LaunchOptions (secrets, image, dead-man switch, ...)


class Unreachable(UserError):
    """RunPod's API stayed unreachable past FleetOptions.unreachable_s."""


class Fleet:
    def __init__(self, queue: Queue, api: runpod_client.Api, git, options: FleetOptions, out, clock=time.time,
                 checked: dict | None = None, runs: Store | None = None):
        self.queue, self.api, self.git, self.options, self.out, self.clock = queue, api, git, options, out, clock
        self.owner = secrets.token_hex(6)  # this controller, in the leases of its claims
        self.launches = 0
        self.wait_s = 0.0  # a wait RunPod asked for (Retry-After), honoured before the next pass
        self.reached_at = clock()  # when RunPod last answered a listing
        self.decisions: list[tuple[str, str | None, RunOutcome]] = []  # (experiment, pod, outcome), in order
        self.disposed: set[str] = set()  # pods terminated (or left stopped) by this controller
        self._checked = {} if checked is None else checked
        # Where the outcome of a pod's run is read, first that knows wins: see `outcome`. `runs`: the
        # runs' root on the network volume (its S3 API, or a mount), where each run says how it ended.
        self.runs = runs
        self.outcome_sources = [self.outcome_from_log, self.outcome_from_pod_state]
        if runs is not None:
            self.outcome_sources.insert(0, self.outcome_from_volume)

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    # --- the loop --------------------------------------------------------------------------------
    def run(self, once: bool = False, sleep=time.sleep) -> int:
        self.check_options()
        self.queue.put("budget_usd", repr(self.options.budget_usd))  # for `fleet status`
        while True:
            self.wait_s = 0.0
            try:
                going = self.step(once)
            except Unreachable as problem:
                self.say(f"error: {problem}")
                return EXIT_UNREACHABLE
            except QueueBusy as problem:  # another writer held the file: nothing changed, the next pass redoes it
                if once:
                    raise
                self.say(f"warning: {problem}")
                going = True
            if not going or once:
                break
            sleep(max(self.options.poll_s, self.wait_s))
        if not once:
            states = [row["state"] for row in self.queue.rows()]
            counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
            budget = f" of ${self.options.budget_usd:.2f}" if self.options.budget_usd else ""
            self.say(f"fleet: {counts}; {self.launches} launches, ${self.total_usd():.2f}{budget}")
        return EXIT_OK

    def check_options(self) -> None:
        """The fleet-wide options, once, before the first claim: a problem of theirs is every
        experiment's, so it stops the fleet (exit 2) instead of marking each experiment dead."""
        base = launching.LaunchOptions(name="fleet", volume_id=self.options.volume_id, spot=self.options.bid is not None,
                                       bid=self.options.bid, **(self.options.launch or {}))
        problems = launching.option_problems(base)
        for row in self.queue.rows(("queued",)):
            try:
                self.check(self.launch_options(row["name"]))
            except launching.OptionProblem as problem:
                problems += [p for p in problem.problems if p not in problems]
            except UserError:
                pass  # the branch's own problem: that experiment is refused when its turn comes
        if problems:
            raise UserError(*problems, "nothing was claimed or marked dead: run `fleet run` again with the options fixed")

    def step(self, once: bool = False) -> bool:
        """One pass; False once every experiment has ended (or the budget stopped the sweep)."""
        now = self.clock()
        listing = self.listing(once)
        if listing is not None:
            for row in self.queue.rows(ACTIVE):
                self.isolated(row["name"], self.reconcile, row, listing.get(row["name"], []), now)
            for name, pods in listing.items():
                self.isolated(name, self.tidy, name, pods)
        spent = self.budget_check(self.clock(), listing)
        if listing is None and now - self.reached_at > self.options.unreachable_s:
            raise Unreachable(f"RunPod's API has not answered for {(now - self.reached_at) / 60:.0f} minutes: "
                              "the controller stops here. Its pods run on (each stops itself: dead-man switch), "
                              "and `fleet run` again adopts them")
        if spent:
            return bool(self.queue.rows(ACTIVE))  # passes go on until every stop went through
        if listing is None:
            return True
        running = len(self.queue.rows(ACTIVE))
        while running < self.options.max_pods:
            row = self.queue.claim(self.clock(), self.owner, LEASE_S)
            if row is None:
                break
            self.isolated(row["name"], self.start, row)
            now_row = self.queue.row(row["name"])
            if now_row["state"] == "launching" and now_row["owner"] == self.owner:
                # Its launch failed before any create went out (RunPod did not answer): no attempt, queued again.
                self.queue.update(row["name"], rev=now_row["rev"], state="queued", launched_at=None, billed_until=None,
                                  owner=None, lease_until=None)
            elif now_row["state"] in ACTIVE:
                running += 1
        return bool(self.queue.rows(("queued", *ACTIVE)))

    def isolated(self, name: str, action, *args):
        """`action(*args)`, its errors that row's own: a warning, and the next pass tries again."""
        try:
            return action(*args)
        except runpod_client.ApiError as problem:
            if problem.fatal:
                raise
            self.wait_s = max(self.wait_s, problem.retry_after or 0.0)
            self.say(f"warning: {name}: {problem}; the next pass tries again")
        except (launching.OptionProblem, Unreachable):
            raise
        except UserError as problem:
            self.say(f"warning: {name}: {problem}; the next pass tries again")
        return None

    def listing(self, once: bool) -> dict[str, list[dict]] | None:
        """The experiment pods by experiment name; None (and a warning) when RunPod did not answer."""
        try:
            pods = runpod_client.experiment_pods(self.api)
        except UserError as problem:
            if once or (isinstance(problem, runpod_client.ApiError) and problem.fatal):
                raise
            self.wait_s = max(self.wait_s, getattr(problem, "retry_after", None) or 0.0)
            self.say(f"warning: {problem}; trying again in {max(self.options.poll_s, self.wait_s):g}s")
            return None
        self.reached_at = self.clock()
        found: dict[str, list[dict]] = {}
        for pod in pods:
            found.setdefault(experiment_of_pod(pod.get("name")), []).append(pod)
        return found

    # --- reconcile -------------------------------------------------------------------------------
    def reconcile(self, row: dict, pods: list[dict], now: float) -> None:
        """Bring an active row up to date with its pod, as listed (`pods`: those of its name)."""
        name = row["name"]
        pod = _current(row, pods)
        if pod is None and row["state"] == "running" and row["pod_id"]:
            pod = self.confirm(row["pod_id"])  # missing from this listing: asked for by id before it counts as gone
            if pod is None:
                return self.ended(row, None, now)
        if pod is not None and pod.get("status") in runpod_client.ALIVE:
            return self.alive(row, pod, now)
        if pod is not None:
            return self.ended(row, pod, now)
        if row["state"] == "launching":
            if (row["lease_until"] or 0) > now:
                return  # its controller is creating the pod right now
            # Its controller died between the claim and the create (no pod of the name): nothing spent.
            if self.queue.update(name, rev=row["rev"], state="queued", launched_at=None, billed_until=None,
                                 owner=None, lease_until=None, reason="launch interrupted"):
                self.say(f"{name}: its launch was interrupted (no pod {pod_name(name)}); queued again")
            return
        if row["state"] == "unconfirmed":
            absent = row["absent"] + 1
            if absent >= 2 and now - (row["launched_at"] or now) >= LAUNCH_GRACE_S:
                # Never created: no pod, nothing billed (its dollars were counted only while unsure).
                if self.queue.update(name, rev=row["rev"], state="queued", launched_at=None, billed_until=None,
                                     absent=0, reason="its create was lost and no pod appeared"):
                    self.say(f"{name}: no pod {pod_name(name)} appeared after its lost create; queued again")
            else:
                self.queue.update(name, rev=row["rev"], absent=absent, billed_until=now)

    def confirm(self, pod_id: str) -> dict | None:
        """The pod as RunPod has it now; None when it is gone (404)."""
        try:
            return self.api.pod(pod_id)
        except runpod_client.ApiError as error:
            if error.status == runpod_client.NOT_FOUND:
                return None
            raise

    def alive(self, row: dict, pod: dict, now: float) -> None:
        name = row["name"]
        rate = runpod_client.pod_rate(pod) or row["rate_usd_h"]
        uptime = (pod.get("runtime") or {}).get("uptime") or 0
        if row["state"] != "running" or row["pod_id"] != pod.get("id"):
            started = _created_at(pod, now)  # adopted: billed from its own creation, or our create if earlier
            spent = row["spent_usd"]
            if row["launched_at"] is not None and row["state"] in ("launching", "unconfirmed"):
                started = min(started, row["launched_at"])
            elif row["state"] == "running":  # its own pod gone, another of the name runs: close the old attempt
                spent += attempt_usd(row, now)
            if self.queue.update(name, rev=row["rev"], state="running", pod_id=pod.get("id"), launched_at=started,
                                 billed_until=now, rate_usd_h=rate, uptime_s=uptime, owner=None, lease_until=None,
                                 absent=0, spent_usd=spent, log_read_at=None,
                                 attempts=row["attempts"] + (row["state"] == "launching")):
                self.say(f"{name}: running on pod {pod.get('id')} (adopted, {pod.get('status')})")
            return
        if now - (row["log_read_at"] or row["launched_at"] or now) >= PARK_CHECK_S:
            if not self.queue.update(name, rev=row["rev"], log_read_at=now):
                return  # another controller is on it
            row = self.queue.row(name)
            verdict = self.outcome(row, pod)
            if verdict[0].outcome in (*TERMINAL, RunOutcome.DEADMAN):
                # The run has ended and the pod did not stop itself: it would bill on, idle. It goes
                # first: until it is gone the row stays running, billed, and the next pass tries again.
                self.say(f"{name}: pod {pod.get('id')} is still up after its run ended; ending it")
                try:
                    self.dispose(name, pod)
                except UserError:
                    self.queue.update(name, log_read_at=None)
                    raise
                return self.ended(self.queue.row(name), pod, self.clock(), verdict)
        self.queue.update(name, rev=row["rev"], billed_until=now, rate_usd_h=rate, uptime_s=uptime)

    def ended(self, row: dict, pod: dict | None, now: float, verdict=None) -> None:
        """Close the attempt (its dollars up to now), act on its outcome, then free the name."""
        name = row["name"]
        spent = row["spent_usd"] + attempt_usd(row, now)
        reading, lines = verdict or self.outcome(row, pod)
        outcome, why = reading.outcome, reading.why
        fields = dict(spent_usd=spent, launched_at=None, billed_until=None, pod_id=None, reason=why, owner=None,
                      lease_until=None, log_read_at=None, absent=0)
        if outcome.value in DONE:
            changed = self.queue.update(name, rev=row["rev"], state=outcome.value, **fields)
            message = f"{name}: {outcome.value} ({why}), ${spent:.2f}"
        elif outcome in (RunOutcome.PREEMPTED, RunOutcome.UNKNOWN):
            preemptions = row["preemptions"] + 1
            if preemptions > self.options.max_preemptions:
                why = f"relaunched {preemptions - 1} times without finishing (--max-preemptions); last: {why}"
                changed = self.queue.update(name, rev=row["rev"], state="dead", preemptions=preemptions,
                                            last_lines="\n".join(lines[-LOG_LINES:]), **{**fields, "reason": why})
                message = f"{name}: dead: {why}"
            else:
                spot_now = row["pod_kind"] == "spot"
                escalate = (outcome is RunOutcome.PREEMPTED and spot_now and not row["on_demand"]
                            and preemptions >= self.options.escalate_after and not self.options.spot_only)
                changed = self.queue.update(name, rev=row["rev"], state="queued", preemptions=preemptions,
                                            on_demand=int(row["on_demand"] or escalate), next_try_at=now, **fields)
                message = f"{name}: {outcome.value} ({why}); relaunching" + (
                    f" on-demand after {preemptions} preemptions" if escalate else "")
        else:  # failed, or stopped by its dead-man switch
            failures = row["failures"] + 1
            if failures >= self.options.max_attempts:
                changed = self.queue.update(name, rev=row["rev"], state="dead", failures=failures,
                                            last_lines="\n".join(lines[-LOG_LINES:]), **fields)
                message = f"{name}: dead after {failures} failed attempts ({why})"
            else:
                wait = self.options.retry_wait_s * 2 ** (failures - 1)
                changed = self.queue.update(name, rev=row["rev"], state="queued", failures=failures,
                                            next_try_at=now + wait, **fields)
                message = f"{name}: {outcome.value} ({why}); retry {failures + 1}/{self.options.max_attempts} in {wait:.0f}s"
        if not changed:
            return  # another controller settled this attempt first
        self.decisions.append((name, (pod or {}).get("id") or row["pod_id"], outcome))
        self.say(message)
        if pod is not None and pod["id"] not in self.disposed:
            self.dispose(name, pod)

    def outcome(self, row: dict, pod: dict | None) -> tuple[Reading, list[str]]:
        """How the run of the row's current attempt ended: the first source that knows (not unknown)
        wins, each source being `source(row, pod) -> (Reading, log lines) | None`. The sources: the
        run's own run_status.json on the network volume (when the controller can read it), the pod's
        outcome line (its log), the pod's state."""
        unknown: list[str] = []
        lines: list[str] = []
        for source in self.outcome_sources:
            found = source(row, pod)
            if found is None:
                continue
            reading, seen = found
            lines = lines or seen
            if reading.outcome is not RunOutcome.UNKNOWN:
                return reading, lines or seen
            unknown.append(reading.why)
        why = "; ".join(unknown) or ("its pod is gone, and its log with it" if pod is None else "no source knows")
        return Reading(RunOutcome.UNKNOWN, f"outcome unknown: {why}"), lines

    def outcome_from_volume(self, row: dict, pod: dict | None):
        try:
            reading = recorded_outcome(self.runs, row["name"], since=row["launched_at"])
        except UserError as problem:
            return Reading(RunOutcome.UNKNOWN, f"run_status.json on the volume is not readable ({problem})"), []
        if reading is None:
            return None  # nothing written by this attempt: the log decides
        if reading.outcome in (RunOutcome.PREEMPTED, RunOutcome.FAILED):
            # The log still says what the file cannot: whose stop signal it was (the pod's own
            # dead-man switch is a failure, RunPod's a preemption), and a failure's last lines.
            from_log = self.outcome_from_log(row, pod)
            if from_log is not None:
                if from_log[0].outcome is RunOutcome.DEADMAN:
                    return from_log
                return reading, from_log[1]
        return reading, []

    def outcome_from_log(self, row: dict, pod: dict | None):
        if pod is None:
            return None
        try:
            lines = self.api.log_tail(pod["id"], LOG_TAIL)
        except UserError as problem:
            return Reading(RunOutcome.UNKNOWN, f"the log of pod {pod['id']} is not readable ({problem})"), []
        return read(lines), lines

    def outcome_from_pod_state(self, row: dict, pod: dict | None):
        if pod is not None and pod.get("status") == "ERROR":
            return Reading(RunOutcome.FAILED, "RunPod put the pod in ERROR"), []
        return None

    def dispose(self, name: str, pod: dict) -> None:
        """Free the name of an ended attempt's pod: terminate it, unless it keeps data on its own
        volume (status.stop's rule: only `stop --terminate --delete-data` deletes that)."""
        size = runpod_client.pod_volume_gb(pod)
        if size:
            if pod.get("status") in runpod_client.ALIVE:
                self.api.stop(pod["id"])
            self.disposed.add(pod["id"])
            self.say(f"{name}: pod {pod['id']} keeps its checkpoints on its own {size} GB volume: left stopped, "
                     f"not deleted (`stop {name} --terminate --delete-data` removes it)")
            return
        self.api.terminate(pod["id"])
        self.disposed.add(pod["id"])

    def tidy(self, name: str, pods: list[dict]) -> None:
        """Ended pods of an experiment that no row is using (a terminate that failed last pass): removed."""
        row = self.queue.row(name)
        if row is None:
            return  # not ours
        for pod in pods:
            ended = pod.get("status") not in runpod_client.ALIVE
            if ended and pod.get("id") not in (row["pod_id"], *self.disposed) and not runpod_client.pod_volume_gb(pod):
                self.api.terminate(pod["id"])
                self.disposed.add(pod["id"])

    # --- money -----------------------------------------------------------------------------------
    def total_usd(self, now: float | None = None) -> float:
        return sum(dollars(row, now) for row in self.queue.rows())

    def budget_check(self, now: float, listing: dict | None) -> bool:
        """True while the sweep's budget is spent: every pod is stopped (those whose stop fails are
        tried again next pass, and counted as billing meanwhile), nothing more launched."""
        budget = self.options.budget_usd
        if not budget:
            return False
        total = self.total_usd(now)
        active = self.queue.rows(ACTIVE)
        ahead = total + sum((row["rate_usd_h"] or 0) for row in active) * self.options.poll_s / 3600
        if ahead >= WARN_FRACTION * budget and not self.queue.get("budget_warned"):
            self.queue.put("budget_warned", "1")
            self.say(f"warning: the fleet has spent ${total:.2f}, {WARN_FRACTION:.0%} of its ${budget:.2f} budget "
                     "with the next pass")
        spent_at = float(self.queue.get("budget_spent", "0") or 0)
        if ahead < budget and not budget <= spent_at:
            return False
        if not budget <= spent_at:
            self.queue.put("budget_spent", repr(budget))
            self.say(f"budget: the fleet has spent ${total:.2f} of ${budget:.2f} (${ahead:.2f} with one more pass): "
                     "every pod is stopped, nothing more launched")
        for row in active:
            self.isolated(row["name"], self.stop_for_budget, row, (listing or {}).get(row["name"]), now)
        for row in self.queue.rows(("queued",)):
            self.queue.update(row["name"], rev=row["rev"], state="stopped",
                              reason="the sweep's budget ran out before its launch")
        return True

    def stop_for_budget(self, row: dict, pods: list[dict] | None, now: float) -> None:
        pod = _current(row, pods or [])
        pod_id = (pod or {}).get("id") or row["pod_id"]
        if pod_id is None:
            if row["state"] == "launching" and (row["lease_until"] or 0) > now:
                return  # being created: stopped next pass, once it is there
            if row["state"] == "unconfirmed" and pods is None:
                return  # unsure whether it exists, and no listing to tell: next pass
        elif pod is None or pod.get("status") in runpod_client.ALIVE:
            try:
                self.api.stop(pod_id)  # SIGTERM: the run saves a checkpoint
            except runpod_client.ApiError as error:
                if error.status not in (runpod_client.NOT_FOUND, runpod_client.STATE_FORBIDS):  # not billing either way
                    raise
        if self.queue.update(row["name"], rev=row["rev"], state="stopped", spent_usd=row["spent_usd"] + attempt_usd(row, now),
                             launched_at=None, billed_until=None, owner=None, lease_until=None,
                             reason="the sweep's budget ran out"):
            self.say(f"{row['name']}: stopped (pod {pod_id or 'none'}): the sweep's budget ran out")

    # --- launch ----------------------------------------------------------------------------------
    def launch_options(self, name: str, **more) -> launching.LaunchOptions:
        return launching.LaunchOptions(name=name, volume_id=self.options.volume_id, **(self.options.launch or {}), **more)

    def start(self, row: dict) -> bool:
        """Rent a pod for the claimed `row`, trying its GPU types in order; False when none could be had."""
        name = row["name"]
        spot = bool(row["spot"]) and not row["on_demand"] and self.options.bid is not None
        try:
            checked = self.check(self.launch_options(name))
        except launching.OptionProblem:
            self.queue.update(name, state="queued", launched_at=None, billed_until=None, owner=None, lease_until=None)
            raise
        except UserError as problem:  # the branch, its config: no retry can fix it
            return self.refused(name, str(problem))
        reasons, spot_gone = [], False
        for gpu in row["gpus"].split(","):
            if not self.queue.renew(name, self.owner, self.clock() + LEASE_S):
                self.say(f"{name}: another controller took over its launch")
                return False
            if not self.free_name(name):
                return True  # a pod of that name runs: adopted, no second one
            options = self.launch_options(name, gpu=gpu, spot=spot, bid=self.options.bid if spot else None)
            launched_at = self.clock()  # billing cannot begin before the create is sent
            try:
                pod, kind, placement = launching.rent(self.api, options, checked, f"{name}-{secrets.token_hex(4)}", self.out)
            except runpod_client.LaunchUnconfirmed as lost:
                # RunPod may have made it: no other create until a listing says whether it did.
                self.queue.update(name, state="unconfirmed", pod_gpu=gpu, pod_kind="spot" if spot else "on-demand",
                                  rate_usd_h=lost.price, launched_at=launched_at, billed_until=self.clock(),
                                  attempts=row["attempts"] + 1, owner=None, lease_until=None, absent=0)
                self.say(f"{name}: launch unconfirmed ({lost}); waiting for a listing to show whether pod "
                         f"{pod_name(name)} exists")
                return True
            except runpod_client.ApiError as problem:
                if problem.fatal:
                    raise
                self.wait_s = max(self.wait_s, problem.retry_after or 0.0)
                reasons.append(f"{gpu}: {problem}")  # 400 no capacity, 403 pool, 429, 5xx: the next candidate
                continue
            except runpod_client.SpotUnavailable as problem:
                spot_gone = spot_gone or problem.gone
                reasons.append(f"{gpu}: {problem}")
                if problem.gone:
                    break  # no GPU type has spot pods any more
                continue
            except UserError as problem:  # not offered there, unreachable
                reasons.append(f"{gpu}: {problem}")
                continue
            self.launches += 1
            rented_spot = kind.startswith("spot")
            # RunPod's answer may not carry the rate yet: the price launch got stands in until a pass
            # sees the pod listed with it, so the sweep budget never counts a pod as free.
            rate = runpod_client.pod_rate(pod) or (options.bid if rented_spot else placement.list_price)
            self.queue.update(name, state="running", pod_id=pod.get("id"), pod_gpu=gpu,
                              pod_kind="spot" if rented_spot else "on-demand", rate_usd_h=rate,
                              attempts=row["attempts"] + 1, launched_at=launched_at, billed_until=self.clock(),
                              owner=None, lease_until=None, spot_misses=0, log_read_at=None)
            self.say(f"{name}: launched pod {pod.get('id')} ({gpu}, {kind})")
            return True
        return self.no_pod(row, spot, spot_gone, reasons)

    def no_pod(self, row: dict, spot: bool, spot_gone: bool, reasons: list[str]) -> bool:
        """No GPU type gave a pod: wait, or (spot) escalate to on-demand, saying which happened."""
        name, now = row["name"], self.clock()
        misses = row["spot_misses"] + 1 if spot else 0
        fields = dict(state="queued", launched_at=None, billed_until=None, owner=None, lease_until=None,
                      spot_misses=misses, reason="no capacity: " + "; ".join(reasons))
        if spot and spot_gone and self.options.spot_only:
            self.queue.update(name, **{**fields, "state": "dead",
                                       "reason": "spot only, and RunPod no longer rents spot pods"})
            self.say(f"{name}: dead: --spot-only, and RunPod's API no longer rents spot pods")
            return False
        if spot and not self.options.spot_only and (spot_gone or misses >= self.options.escalate_after):
            self.queue.update(name, **fields, on_demand=1, next_try_at=now)
            why = "RunPod's API no longer rents spot pods" if spot_gone else \
                f"no spot pod to be had in {misses} passes"
            self.say(f"{name}: {why}: on-demand from now on")
            return False
        self.queue.update(name, **fields, next_try_at=now + self.options.retry_wait_s)
        self.say(f"{name}: no capacity on {row['gpus']}; retrying in {self.options.retry_wait_s:.0f}s")
        return False

    def free_name(self, name: str) -> bool:
        """Just before a create: RunPod has no live pod of the name (True). One that runs is adopted
        (False); ended ones of earlier attempts are removed (their checkpoints are on the network volume)."""
        pods = runpod_client.experiment_pods(self.api, name)
        alive = [p for p in pods if p.get("status") in runpod_client.ALIVE]
        if alive:
            row = self.queue.row(name)
            self.alive(row, alive[0], self.clock())
            return False
        for pod in pods:
            self.dispose(name, pod)
        return True

    def check(self, options: launching.LaunchOptions) -> launching.Checked:
        # launch's checks once per commit of the branch: a relaunch after a push checks the new one.
        key = (options.name, self.git.branch_commit(options.name))
        if key not in self._checked:
            self._checked[key] = launching.check(self.git, options)
        return self._checked[key]

    def refused(self, name: str, why: str) -> bool:
        """A launch that no retry can fix (a bad branch, a bad config): dead at once, with the reason."""
        self.queue.update(name, state="dead", reason=why, launched_at=None, billed_until=None, owner=None,
                          lease_until=None)
        self.say(f"{name}: dead: {why}")
        return False


def _current(row: dict, pods: list[dict]) -> dict | None:
    """The row's pod among those of its name: its own, else a live one, else any."""
    own = next((p for p in pods if p.get("id") == row["pod_id"]), None)
    alive = [p for p in pods if p.get("status") in runpod_client.ALIVE]
    if own is not None and (own in alive or not alive):
        return own
    return alive[0] if alive else (pods[0] if pods else None)


def _created_at(pod: dict, now: float) -> float:
    """When the pod began billing at the latest: its createdAt, else now less its uptime."""
    try:
        return min(now, datetime.fromisoformat(str(pod.get("createdAt")).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return now - ((pod.get("runtime") or {}).get("uptime") or 0)


# --- fleet status ----------------------------------------------------------------------------------
STATUS_COLUMNS = ("experiment", "state", "attempts", "preempted", "gpu", "kind", "uptime", "dollars", "step",
                  "best eval_loss", "CER")


def status_table(rows: list[dict], runs: dict, budget: float | None, billed: dict | str | None = None) -> list[str]:
    """The table of `fleet status`; `runs`: name -> Run (runs.read_runs, from a directory or the volume);
    `billed`: name -> what RunPod billed (billing.billed_by_experiment), or why it could not be read."""
    columns = STATUS_COLUMNS
    if isinstance(billed, dict):
        at = columns.index("dollars") + 1
        columns = (*columns[:at], "billed", *columns[at:])
    table = []
    for row in rows:
        run = runs.get(row["name"])
        best = run.best("eval_loss") if run is not None else None
        cer = run.best("eval_cer") if run is not None else None
        cells = [
            row["name"], row["state"], str(row["attempts"]), str(row["preemptions"]), row["pod_gpu"] or "-",
            row["pod_kind"] or ("on-demand" if row["on_demand"] or not row["spot"] else "spot"),
            hours_minutes(row["uptime_s"]), f"${dollars(row):.2f}",
            str(run.step) if run is not None and run.step is not None else "-",
            f"{best[0]:.4f}" if best else "-", f"{cer[0]:.4f}" if cer else "-",
        ]
        if isinstance(billed, dict):
            amount = billed.get(row["name"])
            cells.insert(columns.index("billed"), f"${amount:.2f}" if amount is not None else "-")
        table.append(cells)
    lines = text_table(columns, table).split("\n")
    total = sum(dollars(row) for row in rows)
    left = f", budget left ${budget - total:.2f} of ${budget:.2f}" if budget else ""
    lines.append(f"fleet total ${total:.2f}{left}")
    if isinstance(billed, dict):
        known = [amount for amount in billed.values() if amount is not None]
        lines.append(f"RunPod billed ${sum(known):.2f} for {len(known)} of {len(rows)} experiments (its billing "
                     "lags; '-': no record yet)")
    elif isinstance(billed, str):
        lines.append(f"RunPod billing not readable: {billed}")
    for row in rows:
        if row["state"] == "dead":
            lines.append(f"{row['name']} dead: {row['reason']}")
            lines += [f"    {line}" for line in (row["last_lines"] or "").splitlines()[-5:]]
    return lines
