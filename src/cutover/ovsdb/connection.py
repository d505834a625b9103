"""One ovsdbapp connection per (host, database), row-event waits, error translation.

ovsdbapp keeps the connection on the backend *class* (``Backend._ovsdb_connection``), so
two instances of ``OvsdbIdl`` for hv1 and hv2 would silently share hv1's connection.
:func:`open_api` therefore derives a distinct subclass per endpoint and caches one
instance per (remote, schema) for the life of the process.

Waits follow ovsdbapp's ``RowEvent`` pattern: register the event *before* the
transaction that will cause it, then re-check the IDL cache once so that a condition that
became true before registration is not missed. Every wait has a timeout, and its error
carries a description of the state that was seen.

Waits survive reconnects. When a server restarts, pauses past a probe or loses the RAFT
leadership, the IDL reconnects (to the next remote of a comma-separated list such as
``unix:a,unix:b,unix:c``) and fetches the database again. python-ovs then delivers what
changed as row events - a full dump as ``ROW_CREATE`` of every row, or with
``monitor_cond_since`` only the delta - but whether a given condition's change shows up
as an event depends on that path, on the events a wait listens to and on the server. So
:class:`EventedIdl` does not rely on it: each time the IDL is back in the ``MONITORING``
state on a new session it re-checks every registered condition against the fresh
replica (in the IDL thread, under the connection lock) and counts the reconnect.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ovsdbapp import exceptions as ovsdbapp_exceptions
from ovsdbapp.backend.ovs_idl import connection as ovs_connection
from ovsdbapp.backend.ovs_idl import event as ovs_event
from ovsdbapp.backend.ovs_idl import idlutils

from cutover.errors import InputError, OvsdbError, WaitTimeout
from cutover.ovsdb import tls

DEFAULT_TIMEOUT_S = 30.0
RECONNECT_BACKOFF_MS = (250, 1000)
"""(min, max) ms between reconnect attempts. python-ovs doubles up to 8 s by default, so a
wait whose server came back (or whose cluster elected a new leader) could sleep for
seconds before even trying; one orchestrator's few connections can afford to retry every
second. (The C daemons keep OVS's 8 s: measured in docs/faults.md.)"""

ApiT = TypeVar("ApiT")
Row = Any
"""An ovs IDL row (live in the IDL thread, frozen when handed to an event)."""


def now_ms() -> float:
    """Wall-clock milliseconds: comparable across processes and with ``ovn-installed-ts``."""
    return time.time() * 1000.0


def remotes(remote: str) -> list[str]:
    """The members of a remote list: ``"unix:a, unix:b"`` -> ``["unix:a", "unix:b"]``
    (python-ovs and ovsdbapp take the same comma-separated form; a clustered database
    is given as the list of its members). InputError for an empty member."""
    parts = [r.strip() for r in remote.split(",")]
    if not remote.strip() or any(not p for p in parts):
        raise InputError(f"OVSDB remote {remote!r}: give one remote or a comma-separated "
                         "list of them, e.g. unix:/run/ovn/ovnsb_db.sock or "
                         "tcp:10.0.0.1:6642,tcp:10.0.0.2:6642")
    return parts


ResyncListener = Callable[[int], None]
"""Called (in the IDL thread) with the reconnect count each time the IDL re-synced."""


class EventedIdl(ovs_connection.OvsdbIdl):  # type: ignore[misc]
    """An IDL that hands every row change to a RowEventHandler, and re-checks every
    registered wait after each reconnect (see the module docstring).

    Plain ovsdbapp IDLs do not dispatch row events; Neutron's OvnIdl adds the same hook.
    """

    def __init__(self, remote: str, schema_helper: Any, **kwargs: Any) -> None:
        super().__init__(remote, schema_helper, **kwargs)
        self._session.reconnect.set_backoff(*RECONNECT_BACKOFF_MS)
        self.notify_handler = ovs_event.RowEventHandler()
        self.reconnects = 0
        """Times the IDL came back to MONITORING on a new session after the first."""
        self._synced_session: object = None
        self._conditions: set[RowCondition] = set()
        self._conditions_lock = threading.Lock()
        self._listeners: list[ResyncListener] = []

    def notify(self, event: str, row: Row, updates: Row | None = None) -> None:
        self.notify_handler.notify(event, row, updates)

    def watch_condition(self, cond: RowCondition) -> None:
        """Register ``cond`` for row events and for the re-check after a reconnect."""
        with self._conditions_lock:
            self._conditions.add(cond)
        self.notify_handler.watch_event(cond)

    def unwatch_condition(self, cond: RowCondition) -> None:
        with self._conditions_lock:
            self._conditions.discard(cond)
        self.notify_handler.unwatch_event(cond)

    def add_resync_listener(self, listener: ResyncListener) -> None:
        self._listeners.append(listener)

    def remove_resync_listener(self, listener: ResyncListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def run(self) -> Any:
        changed = super().run()
        self.after_run()
        return changed

    def after_run(self) -> None:
        """Detect a completed (re)sync: connected, MONITORING, on a session not synced yet
        (``_last_seqno`` is the session sequence number python-ovs restarted its state
        machine for; it changes on every new connection)."""
        if self.state != self.IDL_S_MONITORING or not self._session.is_connected():
            return
        session = self._last_seqno
        if session == self._synced_session:
            return
        first = self._synced_session is None
        self._synced_session = session
        if first:
            return
        self.reconnects += 1
        self.recheck_all()
        for listener in list(self._listeners):
            listener(self.reconnects)

    def recheck_all(self) -> None:
        """Test every registered condition against the replica as it is now."""
        with self._conditions_lock:
            conditions = list(self._conditions)
        for cond in conditions:
            table = self.tables.get(cond.table)
            if table is not None:
                cond.recheck(list(table.rows.values()))


_APIS: dict[tuple[str, str], Any] = {}
_APIS_LOCK = threading.Lock()
_UNREACHABLE = ("Connection refused", "Network is unreachable", "No route to host",
                "Connection timed out", "No such file or directory")
"""Stream errors of a server that was never reached (no TLS session was tried): the
transport's error is the diagnosis, not the certificates. (python-ovs reports a failed
TLS handshake as "Operation not permitted": that one goes to the TLS diagnosis.)"""


class _Said(logging.Handler):
    """Keeps what ovsdbapp logs while a connection opens: python's last-resort handler
    would print it to stderr beside our one-line error; it goes into that error instead."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def _said_by_ovsdbapp() -> Iterator[_Said]:
    log = logging.getLogger("ovsdbapp")
    said, propagate = _Said(), log.propagate
    log.addHandler(said)
    log.propagate = False
    try:
        yield said
    finally:
        log.removeHandler(said)
        log.propagate = propagate


def open_api(
    base: type[ApiT],
    remote: str,
    schema: str,
    tables: tuple[str, ...],
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ApiT:
    """Return the (cached) ovsdbapp API object for ``remote``, connected and monitoring
    ``tables``. Each endpoint gets its own backend subclass, hence its own connection."""
    remotes(remote)
    key = (remote, schema)
    with _APIS_LOCK:
        api = _APIS.get(key)
        if api is not None:
            return api  # type: ignore[no-any-return]
        tls.require_configured(remote, schema)
        cls_name = f"{base.__name__}_{len(_APIS)}"
        per_endpoint: type[ApiT] = type(cls_name, (base,), {"_ovsdb_connection": None})
        with _said_by_ovsdbapp() as said:
            try:
                idl = EventedIdl.from_server(remote, schema, helper_tables=tables)
                conn = ovs_connection.Connection(idl, timeout_s)
                api = per_endpoint(conn)  # type: ignore[call-arg]
            except Exception as e:  # ovs / ovsdbapp raise many kinds here
                unreached = any(u in line for line in said.lines for u in _UNREACHABLE)
                if tls.uses_ssl(remote) and not unreached:
                    refused = tls.diagnose(remote, schema)
                    if refused is not None:
                        raise refused from e
                how = "; ".join(said.lines) or f"{type(e).__name__}: {e}"
                raise OvsdbError(
                    f"cannot connect to the {schema} database at {remote} ({how}); check "
                    "that its ovsdb-server runs, that the address or path is right and "
                    "reachable from here (network namespace, routing, firewall)"
                ) from e
        _APIS[key] = api
        return api


def close_all() -> None:
    """Stop every cached connection (tests and CLI exit)."""
    close_matching(lambda remote: True)


def close_matching(match: Callable[[str], bool]) -> None:
    """Stop the cached connections whose remote ``match`` es, e.g. those to a lab that is
    being torn down: a later server on the same socket path must not be met with the
    stale cache of the old one (a ``may_exist`` add would then do nothing)."""
    with _APIS_LOCK:
        for key in [k for k in _APIS if match(k[0])]:
            api = _APIS.pop(key)
            api.ovsdb_connection.stop(timeout=5)
            api.idl.notify_handler.shutdown()


class RowCondition(ovs_event.RowEvent):  # type: ignore[misc]
    """Fires once when a row of ``table`` is created or updated to satisfy ``predicate``.

    Compared by identity: ovsdbapp's RowEvent equality is (class, table, events,
    conditions), and its handler keeps events in a set, so two waits on one table would
    otherwise collapse into one and cancelling either would drop the other.
    """

    ONETIME = True
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self, table: str, predicate: Callable[[Row], bool]) -> None:
        super().__init__((self.ROW_CREATE, self.ROW_UPDATE), table, None)
        self.predicate = predicate
        self.done = threading.Event()
        self.row: Row | None = None
        self.t_ms: float | None = None
        self.event_name = f"RowCondition({table})"

    def match_fn(self, event: str, row: Row, old: Row | None) -> bool:
        if self.done.is_set():
            return False
        try:
            return bool(self.predicate(row))
        except (AttributeError, KeyError, IndexError):
            return False

    def run(self, event: str, row: Row, old: Row | None) -> None:
        self.satisfy(row)

    def recheck(self, rows: list[Row]) -> None:
        """Satisfy with the first of ``rows`` (live IDL rows) that matches, if any."""
        for row in rows:
            if self.match_fn(self.ROW_UPDATE, row, None):
                self.satisfy(idlutils.frozen_row(row))
                break

    def satisfy(self, row: Row) -> None:
        if not self.done.is_set():
            self.row = row
            self.t_ms = now_ms()
            self.done.set()


class Watch:
    """A registered wait; :meth:`wait` returns the matching row and when it was seen.

    Registered on creation, unregistered by :meth:`cancel` (idempotent) or after
    :meth:`wait` returns or raises.
    """

    def __init__(
        self, idl: EventedIdl, cond: RowCondition, what: str, describe: Callable[[], str]
    ) -> None:
        self._idl = idl
        self._cond = cond
        self.what = what
        self._describe = describe

    @property
    def fired(self) -> bool:
        return self._cond.done.is_set()

    @property
    def seen_ms(self) -> float | None:
        return self._cond.t_ms

    @property
    def row(self) -> Row | None:
        return self._cond.row

    def cancel(self) -> None:
        self._idl.unwatch_condition(self._cond)

    def recheck(self, rows: list[Row]) -> None:
        """Test ``rows`` (an IDL cache snapshot) once more: for a predicate whose inputs
        changed after registration (e.g. a target value known only after a commit)."""
        self._cond.recheck(rows)

    def wait(self, timeout_s: float) -> tuple[Row, float]:
        try:
            if not self._cond.done.wait(timeout_s):
                raise WaitTimeout(self.what, timeout_s, self._describe())
        finally:
            self.cancel()
        assert self._cond.t_ms is not None
        return self._cond.row, self._cond.t_ms


class Database:
    """Shared behaviour of the NB, SB and local vswitch clients."""

    def __init__(self, api: Any, label: str) -> None:
        self.api = api
        self.label = label

    def execute(self, *commands: Any) -> list[Any]:
        """Run ``commands`` in ONE transaction, raising OvsdbError on any failure."""
        try:
            with self.api.transaction(check_error=True) as txn:
                for c in commands:
                    txn.add(c)
            return [c.result for c in commands]
        except ovsdbapp_exceptions.TimeoutException as e:
            raise OvsdbError(f"{self.label}: transaction timed out ({e}); is it overloaded?") from e
        except Exception as e:  # ovsdbapp raises RuntimeError & co. for failed txns
            raise OvsdbError(f"{self.label}: transaction failed: {type(e).__name__}: {e}") from e

    @property
    def reconnects(self) -> int:
        """How often this connection re-synced after losing its server (see the module)."""
        return int(self.api.idl.reconnects)

    def rows(self, table: str) -> list[Row]:
        """A snapshot of the IDL cache of ``table``, taken under the connection lock."""
        with self.api.ovsdb_connection.lock:
            return list(self.api.tables[table].rows.values())

    def register(
        self,
        table: str,
        predicate: Callable[[Row], bool],
        what: str,
        describe: Callable[[], str],
    ) -> Watch:
        """Start waiting for ``predicate`` on ``table``.

        Call it *before* the transaction that causes the change; the IDL cache is checked
        once after registration so that an already-true condition is not missed.
        """
        cond = RowCondition(table, predicate)
        idl: EventedIdl = self.api.idl
        idl.watch_condition(cond)
        watch = Watch(idl, cond, what, describe)
        watch.recheck(self.rows(table))
        return watch

    @contextmanager
    def watch(
        self,
        table: str,
        predicate: Callable[[Row], bool],
        what: str,
        describe: Callable[[], str],
    ) -> Iterator[Watch]:
        """:meth:`register` for the duration of a block."""
        w = self.register(table, predicate, what, describe)
        try:
            yield w
        finally:
            w.cancel()
