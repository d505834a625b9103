"""A wait must not hang when its row event is lost in a reconnect: after every re-sync
the IDL re-checks each registered condition against the fresh replica.

Drives :meth:`EventedIdl.after_run` through the states python-ovs goes through on a
reconnect (no server: the session and the replica are set by hand)."""

from __future__ import annotations

import collections
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from ovs.db import idl as ovs_idl

from cutover.errors import InputError
from cutover.ovsdb.connection import EventedIdl, RowCondition, Watch, remotes

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class FakeSession:
    def __init__(self) -> None:
        self.connected = True

    def is_connected(self) -> bool:
        return self.connected

    def close(self) -> None:
        pass


def fake_row(name: str, value: str) -> Any:
    columns = {"name": None, "external_ids": None}
    entry = collections.namedtuple("Bridge", ["uuid", *columns])  # type: ignore[misc]
    table = SimpleNamespace(name="Bridge", columns=columns,
                            rows=SimpleNamespace(IndexEntry=entry))
    return SimpleNamespace(_table=table, uuid=uuid.uuid4(), name=name,
                           external_ids={"k": value})


@pytest.fixture
def idl() -> Any:
    helper = ovs_idl.SchemaHelper(SCHEMA)
    helper.register_table("Bridge")
    the_idl = EventedIdl("unix:/nonexistent/cutover-test.sock", helper)
    the_idl._session.close()
    the_idl._session = FakeSession()
    the_idl.tables = {"Bridge": SimpleNamespace(rows={})}
    yield the_idl
    the_idl.notify_handler.shutdown()


def set_rows(idl: Any, *rows: Any) -> None:
    idl.tables["Bridge"].rows = {r.uuid: r for r in rows}


def synced(idl: Any, session: int) -> None:
    """python-ovs after the monitor reply of the connection numbered ``session``."""
    idl._last_seqno = session
    idl.state = idl.IDL_S_MONITORING
    idl.after_run()


def watch(idl: Any, value: str) -> Watch:
    cond = RowCondition("Bridge", lambda r: r.external_ids.get("k") == value)
    idl.watch_condition(cond)
    return Watch(idl, cond, f"k={value}", lambda: "seen: nothing")


def test_a_change_made_while_disconnected_satisfies_the_wait_after_the_resync(idl: Any) -> None:
    set_rows(idl, fake_row("br-int", "old"))
    synced(idl, 1)
    w = watch(idl, "new")
    # disconnected: the server changed the row, no event reached us
    idl._session.connected = False
    set_rows(idl, fake_row("br-int", "new"))
    idl.after_run()
    assert not w.fired and idl.reconnects == 0
    # reconnected, state machine restarted but the dump not yet in: still nothing
    idl._session.connected = True
    idl._last_seqno = 3
    idl.state = idl.IDL_S_SERVER_SCHEMA_REQUESTED
    idl.after_run()
    assert not w.fired
    # the fresh replica is in (python-ovs's state is MONITORING again): satisfied
    synced(idl, 3)
    assert w.fired and w.row.name == "br-int" and idl.reconnects == 1
    row, seen = w.wait(0.0)
    assert row.external_ids["k"] == "new" and seen > 0


def test_the_first_sync_is_not_a_reconnect_and_a_resync_counts_once(idl: Any) -> None:
    seen: list[int] = []
    idl.add_resync_listener(seen.append)
    synced(idl, 1)
    synced(idl, 1)
    assert idl.reconnects == 0 and seen == []
    synced(idl, 3)
    synced(idl, 3)
    synced(idl, 5)
    assert idl.reconnects == 2 and seen == [1, 2]


def test_a_cancelled_wait_is_not_rechecked(idl: Any) -> None:
    synced(idl, 1)
    w = watch(idl, "new")
    w.cancel()
    set_rows(idl, fake_row("br-int", "new"))
    synced(idl, 3)
    assert not w.fired


def test_an_unmatched_wait_keeps_waiting_and_times_out_with_the_state_seen(idl: Any) -> None:
    synced(idl, 1)
    w = watch(idl, "new")
    set_rows(idl, fake_row("br-int", "other"))
    synced(idl, 3)
    assert not w.fired
    with pytest.raises(Exception, match="seen: nothing"):
        w.wait(0.01)


def test_remote_lists() -> None:
    assert remotes("unix:/a") == ["unix:/a"]
    assert remotes("unix:/a, unix:/b,unix:/c") == ["unix:/a", "unix:/b", "unix:/c"]
    for bad in ("", " ", "unix:/a,", ",unix:/a", "unix:/a,,unix:/b"):
        with pytest.raises(InputError):
            remotes(bad)
