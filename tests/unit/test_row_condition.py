"""Waits on one table must not collapse into one (ovsdbapp compares events by value)."""

from __future__ import annotations

from ovsdbapp.backend.ovs_idl import event as ovs_event

from cutover.ovsdb.connection import RowCondition


def test_two_waits_on_one_table_are_both_watched_and_cancelled_separately() -> None:
    handler = ovs_event.RowEventHandler()
    try:
        a = RowCondition("Port_Binding", lambda r: True)
        b = RowCondition("Port_Binding", lambda r: False)
        handler.watch_event(a)
        handler.watch_event(b)
        assert set(handler._watched_events) == {a, b}
        handler.unwatch_event(b)
        assert list(handler._watched_events) == [a]
    finally:
        handler.shutdown()
