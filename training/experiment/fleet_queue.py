"""The fleet's queue of experiments and everything the controller knows about them, in one SQLite file.

One row per experiment. States: queued (waiting for a pod, not before `next_try_at`), launching
(claimed by a controller, pod being created), running (a pod of that name exists), finished,
early_stopped, budget_stopped (ended by their own budget_cap), dead (failed M times, or refused),
stopped (the sweep's budget ran out). Every change is one transaction; a claim is an UPDATE that
only succeeds on a queued row (`BEGIN IMMEDIATE` serialises writers), so two controllers never
launch the same experiment. Dollars: `spent_usd` holds closed attempts; a pod running now adds
`rate_usd_h` x (`billed_until` - `launched_at`).

    python -m training.experiment queue add lr-1e4 lr-2e4 --priority 5 --gpu "NVIDIA GeForce RTX 4090"
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager

from training.errors import UserError

DB_ENV = "FLEET_DB"
DEFAULT_DB = os.path.join("outputs", "fleet.sqlite")
ACTIVE = ("launching", "running")
ENDED = ("finished", "early_stopped", "budget_stopped", "dead", "stopped")
SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    priority INTEGER NOT NULL DEFAULT 0,
    gpus TEXT NOT NULL,              -- GPU type ids in order of preference, comma-separated
    spot INTEGER NOT NULL DEFAULT 1, -- wants spot pods (until escalated)
    on_demand INTEGER NOT NULL DEFAULT 0,  -- escalated to on-demand after repeated preemptions
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    preemptions INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    next_try_at REAL NOT NULL DEFAULT 0,
    pod_id TEXT, pod_gpu TEXT, pod_kind TEXT,
    launched_at REAL, billed_until REAL, rate_usd_h REAL,
    spent_usd REAL NOT NULL DEFAULT 0,
    uptime_s REAL NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    last_lines TEXT NOT NULL DEFAULT '',
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Every pod an experiment ever had (its row keeps only the current one): RunPod bills by pod id.
CREATE TABLE IF NOT EXISTS pods (pod_id TEXT PRIMARY KEY, name TEXT NOT NULL, first_seen REAL NOT NULL);
"""


def db_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get(DB_ENV) or DEFAULT_DB


class Queue:
    def __init__(self, path: str, clock=time.time):
        self.path, self.clock = path, clock
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            # WAL: readers (fleet status) never block the controller; NORMAL: a commit is atomic and
            # survives a crash of the process, without an fsync per change (a power cut may lose the last).
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise UserError(f"fleet queue {path}: not a readable SQLite file ({error}); pass --db PATH") from None

    @contextmanager
    def transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # --- the user's queue ------------------------------------------------------------------------
    def add(self, names: list[str], priority: int, gpus: list[str], spot: bool) -> list[str]:
        """Queue `names`; those already queued or running are refused, all or none."""
        with self.transaction() as db:
            known = {row["name"]: row["state"] for row in db.execute(
                f"SELECT name, state FROM experiments WHERE name IN ({','.join('?' * len(names))})", names)}
            busy = [f"{name} ({state})" for name, state in known.items() if state not in ENDED]
            if busy:
                raise UserError(f"already in the queue: {', '.join(busy)} (queue remove NAME first)")
            for name in names:
                db.execute("DELETE FROM experiments WHERE name = ?", (name,))
                db.execute("INSERT INTO experiments (name, priority, gpus, spot, added_at) VALUES (?, ?, ?, ?, ?)",
                           (name, priority, ",".join(gpus), int(spot), self.clock()))
        return names

    def remove(self, name: str) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT state FROM experiments WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UserError(f"{name}: not in the queue (queue list shows it)")
            if row["state"] in ACTIVE:
                raise UserError(f"{name} is {row['state']} on a pod: `stop {name}` it first, then remove it")
            db.execute("DELETE FROM experiments WHERE name = ?", (name,))

    def rows(self, states: tuple[str, ...] | None = None) -> list[dict]:
        query = "SELECT * FROM experiments"
        if states:
            query += f" WHERE state IN ({','.join('?' * len(states))})"
        query += " ORDER BY priority DESC, added_at, name"
        return [dict(row) for row in self.db.execute(query, states or ())]

    # --- the controller's ------------------------------------------------------------------------
    def claim(self, now: float) -> dict | None:
        """The highest-priority queued experiment due now, marked launching; None if there is none."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM experiments WHERE state = 'queued' AND next_try_at <= ? "
                             "ORDER BY priority DESC, added_at, name LIMIT 1", (now,)).fetchone()
            if row is None:
                return None
            changed = db.execute("UPDATE experiments SET state = 'launching', launched_at = ?, billed_until = ? "
                                 "WHERE name = ? AND state = 'queued'", (now, now, row["name"])).rowcount
            return dict(row) if changed else None

    def update(self, name: str, **fields) -> None:
        with self.transaction() as db:
            db.execute(f"UPDATE experiments SET {', '.join(f'{k} = ?' for k in fields)} WHERE name = ?",
                       (*fields.values(), name))
            if fields.get("pod_id"):
                db.execute("INSERT OR IGNORE INTO pods (pod_id, name, first_seen) VALUES (?, ?, ?)",
                           (fields["pod_id"], name, self.clock()))

    def pods(self) -> dict[str, list[tuple[str, float]]]:
        """Every pod each experiment had: name -> [(pod id, first seen)], oldest first."""
        found: dict[str, list[tuple[str, float]]] = {}
        for row in self.db.execute("SELECT pod_id, name, first_seen FROM pods ORDER BY first_seen, pod_id"):
            found.setdefault(row["name"], []).append((row["pod_id"], row["first_seen"]))
        return found

    def get(self, key: str, default: str = "") -> str:
        row = self.db.execute("SELECT value FROM fleet WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else default

    def put(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO fleet (key, value) VALUES (?, ?)", (key, value))


def attempt_usd(row: dict) -> float:
    """What the pod of the current attempt has cost so far (0 when there is none)."""
    if row.get("launched_at") is None or row.get("billed_until") is None or not row.get("rate_usd_h"):
        return 0.0
    return max(0.0, row["billed_until"] - row["launched_at"]) * row["rate_usd_h"] / 3600


def dollars(row: dict) -> float:
    return row["spent_usd"] + (attempt_usd(row) if row["state"] in ACTIVE else 0.0)
