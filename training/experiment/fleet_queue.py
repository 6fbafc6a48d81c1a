"""The fleet's queue of experiments and everything the controller knows about them, in one SQLite file.

One row per experiment. States: queued (waiting for a pod, not before `next_try_at`), launching
(claimed by a controller, which holds a lease on it while it creates the pod), unconfirmed (a create
whose answer was lost: the pod may exist, and bills as if it did, until a listing settles it),
running (a pod of that name exists), then the ends: finished, early_stopped, budget_stopped (by the
experiment's own budget_cap), dead (failed M times, stopped too often, or refused), stopped (the
sweep's budget ran out). The ends that a run reaches by itself are training.outcome.RunOutcome values.

Every change is one transaction. A claim is an UPDATE that only succeeds on a queued row
(`BEGIN IMMEDIATE` serialises writers) and gives the claiming controller a lease that only it
renews; a controller's other changes name the row's `rev` as they read it, so of two controllers
racing on one row, one changes it and the other sees it changed (`update` returns False). Dollars:
`spent_usd` holds closed attempts; a pod that may be billing adds `rate_usd_h` x (`billed_until` -
`launched_at`), `launched_at` being the moment just before its create was sent (or the pod's own
creation, for a pod adopted).

A file locked by another writer is waited for (LOCK_WAIT_S), then QueueBusy (the controller carries
on at its next pass); a damaged file is one UserError line.

    python -m training.experiment queue add lr-1e4 lr-2e4 --priority 5 --gpu "NVIDIA GeForce RTX 4090"
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager

from training.errors import UserError
from training.outcome import RunOutcome

DB_ENV = "FLEET_DB"
DEFAULT_DB = os.path.join("outputs", "fleet.sqlite")
ACTIVE = ("launching", "unconfirmed", "running")  # a pod may exist, and bill
# The ends a run reaches by itself, in RunOutcome's words, and those the fleet decides.
DONE = (RunOutcome.FINISHED.value, RunOutcome.EARLY_STOPPED.value, RunOutcome.BUDGET_STOPPED.value)
ENDED = (*DONE, "dead", "stopped")
LOCK_WAIT_S = 15.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    priority INTEGER NOT NULL DEFAULT 0,
    gpus TEXT NOT NULL,              -- GPU type ids in order of preference, comma-separated
    spot INTEGER NOT NULL DEFAULT 1, -- wants spot pods (until escalated)
    on_demand INTEGER NOT NULL DEFAULT 0,  -- escalated to on-demand (preemptions, or no spot to be had)
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    preemptions INTEGER NOT NULL DEFAULT 0,  -- attempts that ended stopped or unknown (relaunched)
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
# Added since the first release of the file: ALTERed into older files as they are opened.
COLUMNS = {
    "rev": "INTEGER NOT NULL DEFAULT 0",  # bumped by every change: a controller's change names the one it read
    "owner": "TEXT",  # the controller holding the claim's lease
    "lease_until": "REAL",
    "spot_misses": "INTEGER NOT NULL DEFAULT 0",  # passes in a row with no spot pod to be had
    "absent": "INTEGER NOT NULL DEFAULT 0",  # listings in a row without the pod of an unconfirmed launch
    "log_read_at": "REAL",  # the last look at a running pod's log (a run that ended on a pod still up)
}


class QueueBusy(UserError):
    """Another writer held the file longer than LOCK_WAIT_S: nothing was changed; try again."""


def db_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get(DB_ENV) or DEFAULT_DB


class Queue:
    def __init__(self, path: str, clock=time.time, lock_wait_s: float = LOCK_WAIT_S):
        self.path, self.clock = path, clock
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            self.db = sqlite3.connect(path, timeout=lock_wait_s, isolation_level=None)
        except sqlite3.Error as error:
            raise UserError(f"fleet queue {path}: cannot open it ({error}); pass --db PATH") from None
        self.db.row_factory = sqlite3.Row
        with self.guard():
            # A damaged page shows up here, not as a TypeError in the middle of a pass.
            verdict = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
            # WAL: readers (fleet status) never block the controller; NORMAL: a commit is atomic and
            # survives a crash of the process, without an fsync per change (a power cut may lose the last).
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            known = {row["name"] for row in self.db.execute("PRAGMA table_info(experiments)")}
            for column, kind in COLUMNS.items():
                if column not in known:
                    self.db.execute(f"ALTER TABLE experiments ADD COLUMN {column} {kind}")

    @contextmanager
    def guard(self):
        """SQLite's errors as the two a user can act on: busy (wait, retry) and damaged (one line)."""
        try:
            yield
        except sqlite3.OperationalError as error:
            if "locked" in str(error) or "busy" in str(error):
                raise QueueBusy(f"fleet queue {self.path}: locked by another writer for over its wait "
                                f"({error}); nothing was changed, try again") from None
            raise self.damaged(error) from None
        except sqlite3.DatabaseError as error:
            raise self.damaged(error) from None

    def damaged(self, error: Exception) -> UserError:
        said = " ".join(str(error).replace("*** in database main ***", "").split())[:160]  # quick_check's lines
        return UserError(f"fleet queue {self.path}: not a readable SQLite file, or a damaged one ({said}); move it "
                         "aside and `queue add` the experiments again (`fleet run` finds their pods on RunPod by name)")

    @contextmanager
    def transaction(self):
        with self.guard():
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
        with self.guard():
            return [dict(row) for row in self.db.execute(query, states or ())]

    def row(self, name: str) -> dict | None:
        with self.guard():
            found = self.db.execute("SELECT * FROM experiments WHERE name = ?", (name,)).fetchone()
        return dict(found) if found else None

    # --- the controller's ------------------------------------------------------------------------
    def claim(self, now: float, owner: str, lease_s: float) -> dict | None:
        """The highest-priority queued experiment due now, marked launching under `owner`'s lease;
        None if there is none."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM experiments WHERE state = 'queued' AND next_try_at <= ? "
                             "ORDER BY priority DESC, added_at, name LIMIT 1", (now,)).fetchone()
            if row is None:
                return None
            changed = db.execute("UPDATE experiments SET state = 'launching', launched_at = ?, billed_until = ?, "
                                 "owner = ?, lease_until = ?, rev = rev + 1 WHERE name = ? AND state = 'queued'",
                                 (now, now, owner, now + lease_s, row["name"])).rowcount
            return self.row(row["name"]) if changed else None

    def renew(self, name: str, owner: str, until: float) -> bool:
        """Extend `owner`'s lease on its launching row; False when the lease is no longer its own."""
        with self.transaction() as db:
            return db.execute("UPDATE experiments SET lease_until = ?, rev = rev + 1 WHERE name = ? AND "
                              "state = 'launching' AND owner = ?", (until, name, owner)).rowcount == 1

    def update(self, name: str, rev: int | None = None, **fields) -> bool:
        """Change the row; with `rev` (as read), only if nobody changed it since. True when changed."""
        where = "name = ?" + (" AND rev = ?" if rev is not None else "")
        with self.transaction() as db:
            changed = db.execute(f"UPDATE experiments SET {''.join(f'{k} = ?, ' for k in fields)}rev = rev + 1 "
                                 f"WHERE {where}", (*fields.values(), name, *([rev] if rev is not None else []))
                                 ).rowcount == 1
            if changed and fields.get("pod_id"):
                db.execute("INSERT OR IGNORE INTO pods (pod_id, name, first_seen) VALUES (?, ?, ?)",
                           (fields["pod_id"], name, self.clock()))
            return changed

    def pods(self) -> dict[str, list[tuple[str, float]]]:
        """Every pod each experiment had: name -> [(pod id, first seen)], oldest first."""
        found: dict[str, list[tuple[str, float]]] = {}
        with self.guard():
            rows = self.db.execute("SELECT pod_id, name, first_seen FROM pods ORDER BY first_seen, pod_id").fetchall()
        for row in rows:
            found.setdefault(row["name"], []).append((row["pod_id"], row["first_seen"]))
        return found

    def get(self, key: str, default: str = "") -> str:
        with self.guard():
            row = self.db.execute("SELECT value FROM fleet WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else default

    def put(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO fleet (key, value) VALUES (?, ?)", (key, value))


def attempt_usd(row: dict, until: float | None = None) -> float:
    """What the pod of the current attempt has cost so far (0 when there is none): up to `until`, else
    up to when it was last seen billing."""
    end = until if until is not None else row.get("billed_until")
    if row.get("launched_at") is None or end is None or not row.get("rate_usd_h"):
        return 0.0
    return max(0.0, end - row["launched_at"]) * row["rate_usd_h"] / 3600


def dollars(row: dict, now: float | None = None) -> float:
    """The experiment's dollars; with `now`, a pod not known to have ended counts as billing up to now."""
    return row["spent_usd"] + (attempt_usd(row, now) if row["state"] in ACTIVE else 0.0)
