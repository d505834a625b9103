"""Count Southbound rows written while a migration runs: measured, not estimated.

:class:`SbMonitor` opens its OWN SB IDL connection (a distinct backend class, built here
rather than through :func:`cutover.ovsdb.connection.open_api`, whose per-endpoint cache
would hand back the migration's connection) and monitors every SB table. Each row the
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
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ovsdbapp.backend.ovs_idl import connection as ovs_connection
from ovsdbapp.schema.ovn_southbound import impl_idl as sb_impl

from cutover.errors import OvsdbError
from cutover.ovsdb.connection import DEFAULT_TIMEOUT_S

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


class SbMonitor:
    """Its own SB connection and a write counter; ``with SbMonitor(remote) as m: ...``."""

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
        # a class of its own: ovsdbapp keeps the connection on the backend class
        cls: type[Any] = type(
            f"SbMonitorApi_{next(_SEQ)}", (sb_impl.OvnSbApiIdlImpl,), {"_ovsdb_connection": None}
        )
        try:
            self._idl = CountingIdl.from_server(remote, "OVN_Southbound", helper_tables=tables)
            self._counter: SbWriteCounter = self._idl.counter
            self._conn = ovs_connection.Connection(self._idl, timeout_s)
            self.api = cls(self._conn)
        except Exception as e:  # ovs / ovsdbapp raise many kinds here
            raise OvsdbError(
                f"SB write monitor cannot connect to {remote} ({type(e).__name__}: {e})"
            ) from e
        self.remote = remote

    @property
    def tables(self) -> list[str]:
        return sorted(self._idl.tables)

    def start(self) -> None:
        self._counter.start()

    def stop(self) -> SbWrites:
        return self._counter.stop()

    def close(self) -> None:
        self._counter.stop()
        self._conn.stop(timeout=5)

    def __enter__(self) -> SbMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
