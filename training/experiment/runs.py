"""Reading what a run wrote under its output_dir, tolerating any file or key missing (runs may be
old, running, killed mid-write, or from a trainer that writes more or fewer keys).

Files: training_config.json (or final/training_config.json), run_status.json, metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from functools import cached_property

from configs.base import TrainingConfig
from training.metrics_log import METRICS_FILE, read_events
from training.run_config import CONFIG_FILE
from training.run_status import read_status

# Always differ from the defaults, so they say nothing about the experiment.
NOT_CHANGES = ("experiment_name", "output_dir")


@dataclass
class Run:
    directory: str
    config: dict | None
    status: dict | None

    @property
    def name(self) -> str:
        return (self.config or {}).get("experiment_name") or os.path.basename(os.path.normpath(self.directory))

    @cached_property
    def events(self) -> list[dict]:
        return [e for e in read_events(os.path.join(self.directory, METRICS_FILE)) if isinstance(e, dict)]

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


def read_run(directory: str) -> Run | None:
    """The run in `directory`, or None when it holds none of a run's files."""
    config = read_json(os.path.join(directory, CONFIG_FILE)) or read_json(os.path.join(directory, "final", CONFIG_FILE))
    status = read_status(directory)
    if config is None and status is None and not os.path.exists(os.path.join(directory, METRICS_FILE)):
        return None
    return Run(directory, config if isinstance(config, dict) else None, status if isinstance(status, dict) else None)


def read_runs(root: str) -> list[Run]:
    if not os.path.isdir(root):
        return []
    runs = (read_run(os.path.join(root, entry)) for entry in sorted(os.listdir(root)))
    return [run for run in runs if run is not None]


def read_json(path: str):
    """The JSON in `path`, or None where it is missing, unreadable or torn."""
    try:
        with open(path, encoding="utf-8") as source:
            return json.load(source)
    except (OSError, ValueError):
        return None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

