"""The durable migration journal: what a migration is doing, written before it does it.

A migration that dies with its process (``kill -9``, a host reboot, an OOM kill) leaves
changes on several nodes: ``requested-chassis=src,dst``, a destination TAP and OVS port,
an incoming guest, published readiness keys, a paused ovn-controller. The journal is what
a *fresh* process needs to finish the job (:mod:`cutover.migration.recovery`): which VM,
from where to where, with which strategy and options, and how far each step got.

Write-ahead, per step: the step's **intent** (with the changes it is about to make, see
:meth:`~cutover.migration.steps.Step.changes`) is committed before its effect, its
**completion** after. So after a crash every step is in one of three states:

- no row: it never started, nothing of it exists;
- ``intent``: it may have happened in part or in whole (its undo/redo must be idempotent);
- ``done``: it happened.

A migration row is ``open`` until the orchestrator (or a recovery) closes it with an
outcome. Stored in SQLite (stdlib ``sqlite3``; one small file in the site's
``state_dir``), every write its own committed transaction with ``synchronous=FULL``, so a
row that a SIGKILL interrupted is either there whole or not at all.

Test hook: ``CUTOVER_TEST_KILL=before:<step>`` (right after the intent is committed) or
``after:<step>`` (right after the completion) makes the process SIGKILL itself there,
so the tests can crash a real ``cutover migrate`` at every step boundary.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutover.errors import InvalidMigration, JournalError

JOURNAL_FILE = "journal.sqlite"
KILL_HOOK = "CUTOVER_TEST_KILL"
OPEN = "open"
"""A migration nobody has finished or rolled back yet."""
OUTCOMES = ("completed", "rolled-back", "recovered-back", "recovered-forward")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS migrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm TEXT NOT NULL, lsp TEXT NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL,
    strategy TEXT NOT NULL,
    options TEXT NOT NULL,          -- JSON: MigrationOptions
    before TEXT NOT NULL,           -- JSON: the port's NB state before (requested-chassis, ...)
    extra TEXT NOT NULL,            -- JSON: the caller's (e.g. a stall it injected)
    host TEXT NOT NULL, pid INTEGER NOT NULL, pid_start TEXT NOT NULL,
    started_ms REAL NOT NULL,
    state TEXT NOT NULL,            -- open | one of OUTCOMES
    ended_ms REAL, detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS steps (
    migration INTEGER NOT NULL REFERENCES migrations(id),
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,            -- intent | done | undone
    changes TEXT NOT NULL,          -- JSON: what the step changes (its durable undo info)
    at_ms REAL NOT NULL,
    PRIMARY KEY (migration, seq)
);
CREATE INDEX IF NOT EXISTS migrations_open ON migrations(state, vm);
"""


def _now_ms() -> float:
    return time.time() * 1000.0


def _process_start(pid: int) -> str:
    """The start time of ``pid`` (``/proc/PID/stat`` field 22): with the pid, it names one
    process even after the pid is reused. "" if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2:].split()[19]


@dataclass(frozen=True)
class StepRecord:
    seq: int
    name: str
    state: str
    """``intent``, ``done`` or ``undone``."""
    changes: Mapping[str, Any]
    at_ms: float


@dataclass(frozen=True)
class MigrationRecord:
    """One journaled migration and its steps (in order)."""

    id: int
    vm: str
    lsp: str
    src: str
    dst: str
    strategy: str
    options: Mapping[str, Any]
    before: Mapping[str, Any]
    extra: Mapping[str, Any]
    host: str
    pid: int
    pid_start: str
    started_ms: float
    state: str
    detail: str
    steps: tuple[StepRecord, ...]

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.steps if s.name == name), None)

    def started(self) -> list[str]:
        """Names of the steps that may have had an effect (intent or done)."""
        return [s.name for s in self.steps if s.state in ("intent", "done")]

    @property
    def owner_alive(self) -> bool:
        """Whether the process that runs this migration still runs (on this host; a
        migration journaled by another host is taken as alive: ask there)."""
        if self.host != socket.gethostname():
            return True
        return self.pid_start != "" and _process_start(self.pid) == self.pid_start

    def describe(self) -> str:
        last = self.steps[-1] if self.steps else None
        where = f"last step {last.name} ({last.state})" if last else "no step started"
        return (f"migration #{self.id} of {self.vm} {self.src} -> {self.dst} "
                f"({self.strategy}), {where}, pid {self.pid}"
                f"{'' if self.owner_alive else ' (gone)'}")  # fmt: skip


class Journal:
    """The journal file of one site (see the module docstring). Each call opens its own
    connection: the journal is written from the orchestrator's thread only, but read by
    ``lab status`` and ``recover`` in other processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._db() as db:
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise JournalError(f"migration journal {path}: {e}") from e

    @classmethod
    def in_dir(cls, state_dir: str | Path) -> Journal:
        return cls(Path(state_dir) / JOURNAL_FILE)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(sqlite3.connect(self.path, timeout=10.0)) as db:
                db.execute("PRAGMA synchronous=FULL")
                with db:  # one committed transaction
                    yield db
        except sqlite3.Error as e:
            raise JournalError(f"migration journal {self.path}: {e}") from e

    # -- writing -----------------------------------------------------------------------------

    def begin(self, vm: str, lsp: str, src: str, dst: str, strategy: str,
              options: Mapping[str, Any], before: Mapping[str, Any],
              extra: Mapping[str, Any] | None = None) -> MigrationEntry:
        """Open the record of a migration that is about to change something.

        InvalidMigration if ``vm`` has an open migration already: a live one is running
        (do not interfere), a dead one must be recovered first."""
        pid = os.getpid()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # no second migration of vm slips in between
            for rec in self._records(db, "state = ? AND vm = ?", (OPEN, vm)):
                raise InvalidMigration(
                    f"{rec.describe()} is still open: "
                    + ("it is running; wait for it" if rec.owner_alive else
                       f"run 'cutover recover {vm}' first")
                )
            cur = db.execute(
                "INSERT INTO migrations (vm, lsp, src, dst, strategy, options, before, extra,"
                " host, pid, pid_start, started_ms, state) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (vm, lsp, src, dst, strategy, json.dumps(dict(options)),
                 json.dumps(dict(before)), json.dumps(dict(extra or {})),
                 socket.gethostname(), pid, _process_start(pid), _now_ms(), OPEN),
            )  # fmt: skip
            assert cur.lastrowid is not None
            return MigrationEntry(self, cur.lastrowid)

    def entry(self, migration_id: int) -> MigrationEntry:
        """Write access to an existing record (recovery continues one)."""
        return MigrationEntry(self, migration_id)

    # -- reading -----------------------------------------------------------------------------

    def open_migrations(self, vm: str | None = None) -> list[MigrationRecord]:
        """Open migrations (of ``vm``), oldest first."""
        where, args = ("state = ?", (OPEN,)) if vm is None else ("state = ? AND vm = ?",
                                                                  (OPEN, vm))  # fmt: skip
        with self._db() as db:
            return self._records(db, where, args)

    def last(self, vm: str) -> MigrationRecord | None:
        with self._db() as db:
            recs = self._records(db, "vm = ?", (vm,))
        return recs[-1] if recs else None

    def _records(self, db: sqlite3.Connection, where: str, args: tuple[Any, ...]
                 ) -> list[MigrationRecord]:  # fmt: skip
        rows = db.execute(
            "SELECT id, vm, lsp, src, dst, strategy, options, before, extra, host, pid,"
            f" pid_start, started_ms, state, detail FROM migrations WHERE {where} ORDER BY id",
            args,
        ).fetchall()
        out = []
        for r in rows:
            steps = tuple(
                StepRecord(seq, name, state, json.loads(changes), at_ms)
                for seq, name, state, changes, at_ms in db.execute(
                    "SELECT seq, name, state, changes, at_ms FROM steps WHERE migration = ?"
                    " ORDER BY seq", (r[0],))
            )  # fmt: skip
            out.append(MigrationRecord(
                id=r[0], vm=r[1], lsp=r[2], src=r[3], dst=r[4], strategy=r[5],
                options=json.loads(r[6]), before=json.loads(r[7]), extra=json.loads(r[8]),
                host=r[9], pid=r[10], pid_start=r[11], started_ms=r[12], state=r[13],
                detail=r[14], steps=steps,
            ))  # fmt: skip
        return out


class MigrationEntry:
    """Write handle of one open migration record (what the orchestrator's step loop and a
    recovery call)."""

    def __init__(self, journal: Journal, migration_id: int) -> None:
        self.journal = journal
        self.id = migration_id

    def intent(self, seq: int, name: str, changes: Mapping[str, Any]) -> None:
        """Step ``seq`` is about to act; committed before the caller acts."""
        with self.journal._db() as db:
            db.execute("INSERT OR REPLACE INTO steps (migration, seq, name, state, changes,"
                       " at_ms) VALUES (?,?,?,?,?,?)",
                       (self.id, seq, name, "intent", json.dumps(dict(changes)), _now_ms()))
        _kill_hook("before", name)

    def done(self, seq: int, name: str) -> None:
        self._set(seq, "done")
        _kill_hook("after", name)

    def undone(self, seq: int) -> None:
        self._set(seq, "undone")

    def _set(self, seq: int, state: str) -> None:
        with self.journal._db() as db:
            db.execute("UPDATE steps SET state = ?, at_ms = ? WHERE migration = ? AND seq = ?",
                       (state, _now_ms(), self.id, seq))

    def note(self, key: str, value: Any) -> None:
        """Add ``key`` to the record's ``extra`` (e.g. a controller paused for it)."""
        with self.journal._db() as db:
            (extra,) = db.execute("SELECT extra FROM migrations WHERE id = ?",
                                  (self.id,)).fetchone()
            db.execute("UPDATE migrations SET extra = ? WHERE id = ?",
                       (json.dumps({**json.loads(extra), key: value}), self.id))

    def finish(self, outcome: str, detail: str = "") -> None:
        """Close the record: nothing of the migration is left to undo or redo."""
        if outcome not in OUTCOMES:
            raise JournalError(f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
        with self.journal._db() as db:
            db.execute("UPDATE migrations SET state = ?, ended_ms = ?, detail = ? WHERE id = ?",
                       (outcome, _now_ms(), detail, self.id))


def _kill_hook(when: str, step: str) -> None:
    """Tests only: SIGKILL this process at a step boundary (see the module docstring)."""
    if os.environ.get(KILL_HOOK) == f"{when}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
