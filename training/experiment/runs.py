"""Reading what a run wrote under its output_dir, tolerating any file or key missing (runs may be
old, running, killed mid-write, or from a trainer that writes more or fewer keys).

Files: training_config.json (or final/training_config.json), run_status.json, metrics.jsonl: the
small files only, never checkpoints. Read through a `training.experiment.volume` store, so the same
code reads a local directory and a network volume through RunPod's S3 API.
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from configs.base import TrainingConfig
from training.metrics_log import METRICS_FILE, parse_events
from training.outcome import RunOutcome
from training.outcome_line import Reading
from training.run_config import CONFIG_FILE
from training.run_files import Store
from training.run_status import STATUS_FILE

# Always differ from the defaults, so they say nothing about the experiment.
NOT_CHANGES = ("experiment_name", "output_dir")


# Reads in flight at once: a sweep on the S3 API is a few small GETs per run, each a round trip.
READERS = 8


@dataclass
class Run:
    where: Store  # the run's output_dir
    config: dict | None
    status: dict | None
    events: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return (self.config or {}).get("experiment_name") or self.where.name

    def series(self, key: str) -> list[tuple[int, float]]:
        points = {}
        for event in self.events:
            step, value = event.get("step"), event.get(key)
            if _number(step) and _number(value):
                points[int(step)] = float(value)
        return sorted(points.items())

    def best(self, key: str) -> tuple[float, int] | None:
        points = self.series(key)
        if not points:
            return None
        step, value = min(points, key=lambda p: (p[1], p[0]))
        return value, step

    @property
    def step(self) -> int | None:
        step = (self.status or {}).get("step")
        if _number(step):
            return int(step)
        steps = [e["step"] for e in self.events if _number(e.get("step"))]
        return int(max(steps)) if steps else None

    @property
    def max_steps(self) -> int | None:
        for source in (self.status or {}, self.config or {}):
            if _number(source.get("max_steps")):
                return int(source["max_steps"])
        return None

    @property
    def cost(self) -> float | None:
        cost = (self.status or {}).get("cost_usd")
        if _number(cost):
            return float(cost)
        costs = self.series("cost_usd")
        return costs[-1][1] if costs else None

    @property
    def state(self) -> str | None:
        return (self.status or {}).get("status")

    @property
    def commit(self) -> str | None:
        return (self.status or {}).get("git_commit")

    def changes(self) -> dict[str, object]:
        """The config fields that differ from configs/base.py's defaults, in the order base.py lists them."""
        defaults = dataclasses.asdict(TrainingConfig())
        config = self.config or {}
        return {k: config[k] for k in defaults if k in config and k not in NOT_CHANGES and config[k] != defaults[k]}


def read_run(where: Store) -> Run | None:
    """The run in `where` (its output_dir), or None when it holds none of a run's files."""
    config = where.json(CONFIG_FILE) or where.json(f"final/{CONFIG_FILE}")
    status = where.json(STATUS_FILE)
    metrics = where.text(METRICS_FILE)
    if config is None and status is None and metrics is None:
        return None
    return Run(where, config if isinstance(config, dict) else None, status if isinstance(status, dict) else None,
               [e for e in parse_events(metrics or "") if isinstance(e, dict)])


def read_runs(root: Store, names: list[str] | None = None) -> list[Run]:
    """Every run under `root` (one directory per experiment), or those of `names`, by name."""
    wanted = sorted(names) if names is not None else root.children()
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        runs = pool.map(lambda name: read_run(root.sub(name)), wanted)
        return [run for run in runs if run is not None]


# Why each ending of run_status.json is what it is, in the fleet's log (training.outcome sets them as a run ends).
ENDINGS = {
    RunOutcome.FINISHED: "finished",
    RunOutcome.EARLY_STOPPED: "early stopping",
    RunOutcome.BUDGET_STOPPED: "the experiment's own budget_cap",
    RunOutcome.PREEMPTED: "stopped by a signal after saving a checkpoint",
    RunOutcome.FAILED: "failed",
}


def recorded_outcome(root: Store, name: str, since: float | None = None) -> Reading | None:
    """How experiment `name`'s attempt ended, from the run's own run_status.json under `root`
    (written atomically by the run as it ends; one small read): the fleet's first source of outcomes.

    None when the file tells nothing about this attempt, and the caller reads the pod's log instead:
    no file, or a torn or unreadable one; a status written before `since` (epoch seconds, the
    attempt's launch: an earlier attempt's file); or still "running" (killed before it could write
    how it ended)."""
    from training.timestamps import parse_utc

    status = root.sub(name).json(STATUS_FILE)
    if not isinstance(status, dict) or status.get("status") not in ENDINGS:
        return None
    if since is not None:
        written = parse_utc(status.get("updated_at"))
        if written is None or written < since:
            return None
    outcome = RunOutcome(status["status"])
    step, max_steps, code = status.get("step"), status.get("max_steps"), status.get("exit_code")
    at = f" at step {step}" + (f"/{max_steps}" if max_steps else "") if _number(step) else ""
    exit_code = f", exit {code}" if _number(code) else ""
    return Reading(outcome, f"run_status.json: {ENDINGS[outcome]}{at}{exit_code}",
                   exit_code=int(code) if _number(code) else None, step=int(step) if _number(step) else None)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

