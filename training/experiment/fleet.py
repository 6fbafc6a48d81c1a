"""`fleet run`: the controller that works the queue off on RunPod, and `fleet status`.

One pass (`step`) does, in order:
1. reconcile: RunPod's pods, found by name (exp-NAME), are the truth. A launching or running row
   whose pod is alive is running; one whose pod has ended gets its outcome, its dollars closed and
   its pod terminated (checkpoints live on the network volume, which stays); a restarted controller
   so adopts every pod that runs and never creates a second one for a name.
2. learn outcomes from the pod's log through RunPod's API (`outcome_of`: the lines setup_pod.sh
   prints as it ends), reachable from a laptop with the same key: finished, early_stopped,
   budget_stopped, preempted or failed, with the reason it chose.
3. act: preempted -> queued again (it resumes from its checkpoints), on-demand after K preemptions;
   failed -> queued again after a backoff (retry_wait_s x 2^(failures-1)), dead after M attempts
   with its reason and last log lines.
4. money: every pod's rate (its own `cost` from RunPod) times the time from its launch to when it
   was last seen alive or first seen ended (an upper bound by one poll: fails closed). At 90% of
   the budget a warning, at 100% every running pod is stopped (each saves on SIGTERM) and nothing
   more is launched.
5. launch the highest-priority queued experiments while fewer than max_pods run; on no capacity the
   next GPU type of the experiment, then a wait of retry_wait_s.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

from training.errors import EXIT_BUDGET, EXIT_OK, EXIT_PREEMPTED, UserError
from training.experiment import launch as launching
from training.experiment import runpod_client
from training.experiment.fleet_queue import ACTIVE, Queue, attempt_usd, dollars
from training.experiment.names import experiment_of_pod, pod_name
from training.table import hours_minutes, text_table

WARN_FRACTION = 0.9
LOG_LINES = 20  # kept with a dead experiment
LAUNCH_GRACE_S = 120  # a launching row without a pod after this long was never created


@dataclass
class FleetOptions:
    max_pods: int
    budget_usd: float = 0.0  # 0 = no sweep budget
    escalate_after: int = 2  # preemptions before on-demand
    max_attempts: int = 3  # failures before dead
    bid: float | None = None  # spot bid per GPU-hour; None = the catalog's price for on-demand
    retry_wait_s: float = 300.0
    poll_s: float = 60.0
    volume_id: str | None = None
    launch: dict | None = None  # the rest of LaunchOptions (secrets, image, dead-man switch, ...)


EXIT_LINE = re.compile(r"ended with exit code (\d+)")


def outcome_of(lines: list[str], status: str | None, spot: bool) -> tuple[str, str]:
    """(outcome, why) of an attempt whose pod has ended, from its last log lines and its state."""
    text = "\n".join(lines)
    if "stopped during" in text:
        return "preempted", f"the run saved a checkpoint on SIGTERM (exit {EXIT_PREEMPTED})"
    codes = EXIT_LINE.findall(text)
    if codes:
        code = int(codes[-1])
        if code == EXIT_OK:
            if "early stopping" in text:
                return "early_stopped", "exit 0 after early stopping"
            return "finished", "exit 0: finished"
        if code == EXIT_BUDGET:
            return "budget_stopped", f"exit {EXIT_BUDGET}: the experiment's own budget_cap"
        return "failed", f"exit {code}: {lines[-1] if lines else ''}".strip()
    if status == "ERROR":
        return "failed", "RunPod put the pod in ERROR"
    if spot:
        return "preempted", "a spot pod ended without its run ending (no outcome line in its log)"
    return "failed", "the pod ended without an outcome line in its log"


class Fleet:
    def __init__(self, queue: Queue, api: runpod_client.Api, git, options: FleetOptions, out, clock=time.time):
        self.queue, self.api, self.git, self.options, self.out, self.clock = queue, api, git, options, out, clock
        self.launches = 0
        self._checked: dict[tuple[str, str | None], launching.Checked] = {}

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    # --- one pass --------------------------------------------------------------------------------
    def step(self) -> bool:
        """One pass; False once every experiment has ended (or the budget stopped the sweep)."""
        now = self.clock()
        pods = {experiment_of_pod(p.get("name")): p for p in runpod_client.experiment_pods(self.api)}
        for row in self.queue.rows(ACTIVE):
            if self.reconcile(row, pods.get(row["name"]), now) == "ended":
                pods.pop(row["name"], None)  # terminated just now: not there to adopt below
        if self.budget_check(now):
            return False
        running = len(self.queue.rows(ACTIVE))
        while running < self.options.max_pods:
            row = self.queue.claim(now)
            if row is None:
                break
            pod = pods.get(row["name"])
            if pod is not None and pod.get("status") in runpod_client.ALIVE:
                # A pod of that name runs (started by hand, or by a controller that lost its file): adopt it.
                self.queue.update(row["name"], state="running", pod_id=pod.get("id"), billed_until=now)
                self.say(f"{row['name']}: adopted pod {pod.get('id')}, already {pod.get('status')}")
            else:
                if pod is not None:  # a stopped pod of an earlier attempt: its checkpoints are on the volume
                    self.api.terminate(pod["id"])
                if not self.start(row, now):
                    continue
            running += 1
        return bool(self.queue.rows(("queued", *ACTIVE)))

    def run(self, once: bool = False, sleep=time.sleep) -> int:
        while True:
            try:
                going = self.step()
            except runpod_client.ApiError as problem:
                if once or problem.status in (401, 402, 422):  # the key, the balance, a broken request
                    raise
                self.say(f"warning: {problem}; trying again in {self.options.poll_s:g}s")
                going = True
            except UserError as problem:  # RunPod unreachable after the retries: the pods run on regardless
                if once:
                    raise
                self.say(f"warning: {problem}; trying again in {self.options.poll_s:g}s")
                going = True
            if not going or once:
                break
            sleep(self.options.poll_s)
        if not once:
            states = [row["state"] for row in self.queue.rows()]
            counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
            budget = f" of ${self.options.budget_usd:.2f}" if self.options.budget_usd else ""
            self.say(f"fleet: {counts}; {self.launches} launches, ${self.total_usd():.2f}{budget}")
        return EXIT_OK

    # --- reconcile -------------------------------------------------------------------------------
    def reconcile(self, row: dict, pod: dict | None, now: float) -> str:
        """What became of the row's attempt: "running", "launching" (still being created) or "ended"."""
        name = row["name"]
        if pod is not None and pod.get("status") in runpod_client.ALIVE:
            rate = runpod_client.pod_rate(pod) or row["rate_usd_h"]
            uptime = (pod.get("runtime") or {}).get("uptime") or 0
            if row["state"] != "running" or row["pod_id"] != pod.get("id"):
                self.say(f"{name}: running on pod {pod.get('id')} (adopted)" if row["state"] == "running"
                         else f"{name}: pod {pod.get('id')} is {pod.get('status')}")
            self.queue.update(name, state="running", pod_id=pod.get("id"), billed_until=now, rate_usd_h=rate,
                              uptime_s=uptime)
            return "running"
        if pod is None and row["state"] == "launching":
            if now - (row["launched_at"] or now) < LAUNCH_GRACE_S:
                return "launching"  # being created by the controller that claimed it
            # Its controller died between the claim and the create: no pod, nothing spent, queue it again.
            self.queue.update(name, state="queued", launched_at=None, billed_until=None, reason="launch interrupted")
            self.say(f"{name}: its launch was interrupted (no pod {pod_name(name)}); queued again")
            return "ended"
        self.ended(row, pod, now)
        return "ended"

    def ended(self, row: dict, pod: dict | None, now: float) -> None:
        name = row["name"]
        row = {**row, "billed_until": now}  # it ended at most now: billed up to here, never less
        spent = row["spent_usd"] + attempt_usd(row)
        lines: list[str] = []
        if pod is not None:
            try:
                lines = self.api.log_tail(pod["id"], LOG_LINES)
            except UserError as problem:
                self.say(f"{name}: log of pod {pod['id']} not readable ({problem})")
        outcome, why = outcome_of(lines, (pod or {}).get("status"), row["pod_kind"] == "spot")
        if pod is not None:
            self.api.terminate(pod["id"])  # the name is free for a relaunch; the network volume stays
        fields = dict(spent_usd=spent, launched_at=None, billed_until=None, pod_id=None, reason=why)
        if outcome in ("finished", "early_stopped", "budget_stopped"):
            self.queue.update(name, state=outcome, **fields)
            self.say(f"{name}: {outcome} ({why}), ${spent:.2f}")
        elif outcome == "preempted":
            preemptions = row["preemptions"] + 1
            escalate = preemptions >= self.options.escalate_after and not row["on_demand"]
            on_demand = row["on_demand"] or escalate
            self.queue.update(name, state="queued", preemptions=preemptions, on_demand=int(on_demand),
                              next_try_at=now, **fields)
            self.say(f"{name}: preempted ({why}); relaunching" +
                     (f" on-demand after {preemptions} preemptions" if escalate else ""))
        else:
            failures = row["failures"] + 1
            if failures >= self.options.max_attempts:
                self.queue.update(name, state="dead", failures=failures, last_lines="\n".join(lines[-LOG_LINES:]),
                                  **fields)
                self.say(f"{name}: dead after {failures} failed attempts ({why})")
            else:
                wait = self.options.retry_wait_s * 2 ** (failures - 1)
                self.queue.update(name, state="queued", failures=failures, next_try_at=now + wait, **fields)
                self.say(f"{name}: failed ({why}); retry {failures + 1}/{self.options.max_attempts} in {wait:.0f}s")

    # --- money -----------------------------------------------------------------------------------
    def total_usd(self) -> float:
        return sum(dollars(row) for row in self.queue.rows())

    def budget_check(self, now: float) -> bool:
        """True when the sweep's budget is spent: every running pod stopped, nothing more launched."""
        if not self.options.budget_usd:
            return False
        total = self.total_usd()
        if total >= WARN_FRACTION * self.options.budget_usd and not self.queue.get("budget_warned"):
            self.queue.put("budget_warned", "1")
            self.say(f"warning: the fleet has spent ${total:.2f}, 90% of its ${self.options.budget_usd:.2f} budget")
        if total < self.options.budget_usd:
            return False
        for row in self.queue.rows(ACTIVE):
            if row["pod_id"]:
                self.api.stop(row["pod_id"])  # SIGTERM: the run saves a checkpoint
            row = {**row, "billed_until": now}  # billed until it stopped: now, never less
            self.queue.update(row["name"], state="stopped", spent_usd=row["spent_usd"] + attempt_usd(row),
                              launched_at=None, billed_until=None, reason="the sweep's budget ran out")
        for row in self.queue.rows(("queued",)):
            self.queue.update(row["name"], state="stopped", reason="the sweep's budget ran out before its launch")
        self.say(f"budget: the fleet has spent ${self.total_usd():.2f} of ${self.options.budget_usd:.2f}: every pod "
                 "stopped, nothing more launched")
        return True

    # --- launch ----------------------------------------------------------------------------------
    def start(self, row: dict, now: float) -> bool:
        """Rent a pod for `row`, trying its GPU types in order; False when none could be had."""
        name = row["name"]
        spot = bool(row["spot"]) and not row["on_demand"] and self.options.bid is not None
        try:
            checked = self.check(launching.LaunchOptions(name=name, volume_id=self.options.volume_id, **(self.options.launch or {})))
        except UserError as problem:  # the branch, its config or the options: no retry can fix it
            return self.refused(name, str(problem))
        reasons = []
        for gpu in row["gpus"].split(","):
            options = launching.LaunchOptions(name=name, gpu=gpu, spot=spot, bid=self.options.bid if spot else None,
                                              volume_id=self.options.volume_id, **(self.options.launch or {}))
            try:
                pod, kind, placement = launching.rent(self.api, options, checked, f"{name}-{secrets.token_hex(4)}", self.out)
            except runpod_client.ApiError as problem:
                if problem.status in (401, 402, 422):  # the key, the balance, a broken request: stop the fleet
                    raise
                reasons.append(f"{gpu}: {problem}")  # 400 no capacity, 403 pool, 429, 5xx: the next candidate
                continue
            except UserError as problem:  # no spot to be had, not offered there, unreachable
                reasons.append(f"{gpu}: {problem}")
                continue
            self.launches += 1
            rented_spot = kind.startswith("spot")
            # RunPod's answer may not carry the rate yet: the price launch got stands in until a pass
            # sees the pod listed with it, so the sweep budget never counts a pod as free.
            rate = runpod_client.pod_rate(pod) or (options.bid if rented_spot else placement.list_price)
            self.queue.update(name, state="running", pod_id=pod.get("id"), pod_gpu=gpu,
                              pod_kind="spot" if rented_spot else "on-demand",
                              rate_usd_h=rate, attempts=row["attempts"] + 1,
                              launched_at=now, billed_until=now)
            self.say(f"{name}: launched pod {pod.get('id')} ({gpu}, {kind})")
            return True
        self.queue.update(name, state="queued", next_try_at=now + self.options.retry_wait_s, launched_at=None,
                          billed_until=None, reason="no capacity: " + "; ".join(reasons))
        self.say(f"{name}: no capacity on {row['gpus']}; retrying in {self.options.retry_wait_s:.0f}s")
        return False

    def check(self, options: launching.LaunchOptions) -> launching.Checked:
        # launch's checks once per commit of the branch: a relaunch after a push checks the new one.
        key = (options.name, self.git.branch_commit(options.name))
        if key not in self._checked:
            self._checked[key] = launching.check(self.git, options)
        return self._checked[key]

    def refused(self, name: str, why: str) -> bool:
        """A launch that no retry can fix (a bad branch, a bad config): dead at once, with the reason."""
        self.queue.update(name, state="dead", reason=why, launched_at=None, billed_until=None)
        self.say(f"{name}: dead: {why}")
        return False


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
