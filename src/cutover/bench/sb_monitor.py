"""Count Southbound rows written while a migration runs: measured, not estimated.

:class:`SbMonitor` runs its OWN SB IDL connection in a child process
(``python -m cutover.bench.sb_monitor``) that monitors every SB table. Not in the
orchestrator's process: parsing every SB update (all of them, Logical_Flow included) in a
thread of the process whose detection latency the bench measures took the GIL from it
right at the claim - measured, 20 port-ready runs per bench, twice each on one lab: median
detection latency 10.7 and 10.2 ms with the counter in the process, 9.0 and 9.3 ms without
(the agent -> orchestrator hop 3.8-4.2 ms vs 2.9-3.2 ms). Each row the
server reports as inserted, updated or deleted between :meth:`SbMonitor.start` and
:meth:`SbMonitor.stop` is counted once, per table. One transaction that touches three
rows counts three; an update is one row, however many columns it changes. ovsdb-server
merges the changes of one row that commit between two of its monitor flushes into one
update, so a row written twice in quick succession may count once: the count is of row
changes *as a monitoring client sees them* (Port_Binding varies 4-8 per migration in the
lab for that reason), a lower bound on raw write transactions.

The bookkeeping (:class:`SbWriteCounter`) is pure and fed by the IDL thread through
``notify``; the initial dump the server sends on connect is never counted, because the
connection has synchronised before ``start`` can be called.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ovsdbapp.backend.ovs_idl import connection as ovs_connection
from ovsdbapp.schema.ovn_southbound import impl_idl as sb_impl

from cutover import children
from cutover.errors import OvsdbError
from cutover.ovsdb import tls
from cutover.ovsdb.connection import DEFAULT_TIMEOUT_S
from cutover.site import SslFiles

REQUIRED_TABLES = (
    "Port_Binding",
    "Chassis_Private",
    "Chassis",
    "SB_Global",
    "MAC_Binding",
    "Encap",
    "Datapath_Binding",
    "Logical_Flow",
)
"""Tables a monitor must cover; by default it monitors every table of the schema."""

EVENTS = ("create", "update", "delete")


@dataclass(frozen=True)
class SbWrites:
    """Rows written in one counting window."""

    total: int = 0
    by_table: dict[str, int] = field(default_factory=dict)
    by_event: dict[str, int] = field(default_factory=dict)

    def table(self, name: str) -> int:
        return self.by_table.get(name, 0)


class SbWriteCounter:
    """Thread-safe row-event bookkeeping: only events between start() and stop() count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counting = False
        self._by_table: Counter[str] = Counter()
        self._by_event: Counter[str] = Counter()

    @property
    def counting(self) -> bool:
        return self._counting

    def start(self) -> None:
        """Open a new window (forgets the previous one)."""
        with self._lock:
            self._by_table.clear()
            self._by_event.clear()
            self._counting = True

    def record(self, event: str, table: str) -> None:
        if event not in EVENTS:
            return
        with self._lock:
            if self._counting:
                self._by_table[table] += 1
                self._by_event[event] += 1

    def snapshot(self) -> SbWrites:
        with self._lock:
            return SbWrites(
                total=sum(self._by_table.values()),
                by_table=dict(sorted(self._by_table.items())),
                by_event=dict(sorted(self._by_event.items())),
            )

    def stop(self) -> SbWrites:
        """Close the window and return what it counted."""
        with self._lock:
            self._counting = False
        return self.snapshot()


class CountingIdl(ovs_connection.OvsdbIdl):  # type: ignore[misc]
    """An IDL whose row notifications feed a :class:`SbWriteCounter`."""

    def __init__(self, remote: str, schema_helper: Any, **kwargs: Any) -> None:
        super().__init__(remote, schema_helper, **kwargs)
        self.counter = SbWriteCounter()

    def notify(self, event: str, row: Any, updates: Any | None = None) -> None:
        self.counter.record(event, str(row._table.name))


_SEQ = itertools.count()


class _Counting:
    """The counter's SB connection (in the child process)."""

    def __init__(self, remote: str, tables: tuple[str, ...] | None, timeout_s: float) -> None:
        # a class of its own: ovsdbapp keeps the connection on the backend class
        cls: type[Any] = type(
            f"SbMonitorApi_{next(_SEQ)}", (sb_impl.OvnSbApiIdlImpl,), {"_ovsdb_connection": None}
        )
        try:
            self._idl = CountingIdl.from_server(remote, "OVN_Southbound", helper_tables=tables)
            self.counter: SbWriteCounter = self._idl.counter
            self._conn = ovs_connection.Connection(self._idl, timeout_s)
            self.api = cls(self._conn)
        except Exception as e:  # ovs / ovsdbapp raise many kinds here
            raise OvsdbError(
                f"SB write monitor cannot connect to {remote} ({type(e).__name__}: {e})"
            ) from e

    @property
    def tables(self) -> list[str]:
        return sorted(self._idl.tables)

    def close(self) -> None:
        self.counter.stop()
        self._conn.stop(timeout=5)


class SbMonitor:
    """A write counter on its own SB connection in a child process (see the module);
    ``with SbMonitor(remote) as m: m.start(); ...; writes = m.stop()``.

    Raises OvsdbError if the child cannot connect, answers something else than expected,
    or does not answer within ``timeout_s``."""

    def __init__(
        self,
        remote: str,
        tables: tuple[str, ...] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """``tables=None`` monitors the whole schema; otherwise at least REQUIRED_TABLES."""
        if tables is not None:
            missing = sorted(set(REQUIRED_TABLES) - set(tables))
            if missing:
                raise OvsdbError(f"an SB write monitor must also watch {', '.join(missing)}")
        self.remote = remote
        self._timeout_s = timeout_s
        # the settings go in on stdin, not in argv: a command line naming the lab's files
        # would be a stray process to the lab's leftover scan (lab/faults.py)
        argv = [sys.executable, "-m", "cutover.bench.sb_monitor"]
        files = tls.configured()
        settings = {"remote": remote, "timeout_s": timeout_s,
                    "tables": list(tables) if tables is not None else None,
                    "ssl": [files.private_key, files.certificate, files.ca_cert]
                    if files is not None else None}  # fmt: skip
        try:  # dies with us: never an orphaned counter
            self._proc = children.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, bufsize=0)
        except OSError as e:
            raise OvsdbError(f"SB write monitor: cannot start {argv[0]}: {e}") from e
        self._pending = b""
        try:
            self._ask(json.dumps(settings))
            answer = self._answer("ready", timeout_s + 5.0)
        except OvsdbError:
            self._kill()
            raise
        self.tables: list[str] = json.loads(answer)

    def start(self) -> None:
        """Open a new counting window (returns once the child counts)."""
        self._ask("start")
        self._answer("started", self._timeout_s)

    def stop(self) -> SbWrites:
        """Close the window: the rows the child saw written since :meth:`start`."""
        self._ask("stop")
        d = json.loads(self._answer("stopped", self._timeout_s))
        return SbWrites(total=d["total"], by_table=d["by_table"], by_event=d["by_event"])

    def close(self) -> None:
        try:
            self._ask("close")
            self._proc.wait(timeout=self._timeout_s)
        except (OvsdbError, subprocess.TimeoutExpired):
            self._kill()

    def _kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def _ask(self, command: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(command.encode() + b"\n")
        except OSError as e:
            raise OvsdbError(f"SB write monitor (pid {self._proc.pid}) is gone: {e}") from e

    def _answer(self, expected: str, timeout_s: float) -> str:
        """The rest of the child's next line, which must start with ``expected``."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise OvsdbError(f"SB write monitor (pid {self._proc.pid}) did not say "
                                 f"{expected!r} within {timeout_s:.0f} s")  # fmt: skip
            chunk = os.read(fd, 65536)
            if not chunk:
                raise OvsdbError(f"SB write monitor (pid {self._proc.pid}) exited "
                                 f"({self._proc.wait()}) before saying {expected!r}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        word, _, rest = line.decode().partition(" ")
        if word == "error":
            raise OvsdbError(rest)
        if word != expected:
            raise OvsdbError(f"SB write monitor said {line.decode()!r}, not {expected!r}")
        return rest

    def __enter__(self) -> SbMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve() -> int:
    """The child: read its settings (one JSON line), connect, say ``ready <tables>``, then
    answer ``start``/``stop``/``close`` read from stdin, one per line (``error <message>``
    when it cannot)."""

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    settings = json.loads(sys.stdin.readline())
    if settings["ssl"]:
        tls.configure(SslFiles(*settings["ssl"]))
    tables = tuple(settings["tables"]) if settings["tables"] else None
    try:
        counting = _Counting(settings["remote"], tables, float(settings["timeout_s"]))
    except OvsdbError as e:
        say(f"error {e}")
        return 1
    say("ready " + json.dumps(counting.tables))
    for line in sys.stdin:
        command = line.strip()
        if command == "start":
            counting.counter.start()
            say("started")
        elif command == "stop":
            w = counting.counter.stop()
            say("stopped " + json.dumps({"total": w.total, "by_table": w.by_table,
                                         "by_event": w.by_event}))  # fmt: skip
        elif command == "close":
            break
        else:
            say(f"error unknown command {command!r}")
    counting.close()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
