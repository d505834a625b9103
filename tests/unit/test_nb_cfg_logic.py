"""Pure logic of the ``nb-cfg`` strategy and of the SB write counter (no OVN)."""

from __future__ import annotations

import os
import subprocess
import threading
from types import SimpleNamespace
from typing import Any, cast

import pytest

from cutover import children
from cutover.bench.sb_monitor import REQUIRED_TABLES, CountingIdl, SbMonitor, SbWriteCounter
from cutover.errors import InvalidMigration, OvsdbError
from cutover.evidence import Evidence
from cutover.migration.orchestrator import _detection_latency
from cutover.migration.strategies import STRATEGY_NAMES as STRATEGIES
from cutover.migration.strategies import build_steps
from cutover.ovsdb.nb import BUMP_MARK_KEY, BumpNbCfgCommand, NbClient
from cutover.readiness.nb_cfg import _timestamp_ms, check_nb_cfg_supported


def test_counter_counts_only_inside_the_window() -> None:
    c = SbWriteCounter()
    c.record("update", "Port_Binding")  # before start: ignored
    c.start()
    for event, table in [
        ("update", "Port_Binding"),
        ("update", "Chassis_Private"),
        ("update", "Chassis_Private"),
        ("create", "MAC_Binding"),
        ("delete", "MAC_Binding"),
        ("weird", "Port_Binding"),  # not a row event
    ]:
        c.record(event, table)
    w = c.stop()
    c.record("update", "Port_Binding")  # after stop: ignored
    assert w.total == 5
    assert w.by_table == {"Chassis_Private": 2, "MAC_Binding": 2, "Port_Binding": 1}
    assert w.by_event == {"create": 1, "delete": 1, "update": 3}
    assert w.table("Logical_Flow") == 0
    assert c.snapshot() == w


def test_counter_start_opens_a_fresh_window() -> None:
    c = SbWriteCounter()
    c.start()
    c.record("update", "SB_Global")
    assert c.stop().total == 1
    c.start()
    assert c.counting
    assert c.stop().total == 0


def test_counter_is_thread_safe() -> None:
    c = SbWriteCounter()
    c.start()

    def feed() -> None:
        for _ in range(1000):
            c.record("update", "Chassis_Private")

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.stop().by_table == {"Chassis_Private": 4000}


def test_counting_idl_feeds_the_counter_by_table_name() -> None:
    fake = SimpleNamespace(counter=SbWriteCounter())
    fake.counter.start()
    row = SimpleNamespace(_table=SimpleNamespace(name="Chassis_Private"))
    idl = cast(CountingIdl, fake)
    CountingIdl.notify(idl, "update", row)
    CountingIdl.notify(idl, "create", row, None)
    assert fake.counter.stop().by_table == {"Chassis_Private": 2}


def test_monitor_refuses_too_few_tables() -> None:
    with pytest.raises(OvsdbError, match="Logical_Flow"):
        SbMonitor("unix:/nonexistent", tables=tuple(t for t in REQUIRED_TABLES
                                                    if t != "Logical_Flow"))


def test_a_monitor_child_gone_at_once_is_reaped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child exits before it reads its settings (their write is a broken pipe): an
    OvsdbError, and no zombie left behind."""
    started: list[subprocess.Popen[Any]] = []

    def gone(argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(["true"], **kwargs)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
        started.append(proc)
        return proc

    monkeypatch.setattr(children, "popen", gone)
    with pytest.raises(OvsdbError, match="SB write monitor"):
        SbMonitor("unix:/nonexistent")
    assert started[0].returncode is not None, "the child was never waited for"


def test_nb_cfg_is_a_strategy_with_the_claim_steps() -> None:
    assert "nb-cfg" in STRATEGIES
    assert [s.name for s in build_steps("nb-cfg")] == [s.name for s in build_steps("claim")]


def _nb(options: dict[str, str]) -> NbClient:
    return cast(NbClient, SimpleNamespace(nb_global_options=lambda: options))


def test_disabled_chassis_nb_cfg_update_is_refused_up_front() -> None:
    with pytest.raises(InvalidMigration, match="enable_chassis_nb_cfg_update=false"):
        check_nb_cfg_supported(_nb({"enable_chassis_nb_cfg_update": "false"}))
    check_nb_cfg_supported(_nb({}))
    check_nb_cfg_supported(_nb({"enable_chassis_nb_cfg_update": "true"}))


class _FakeRow:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def setkey(self, column: str, key: str, value: str) -> None:
        self.calls.append(("setkey", column, key, value))

    def increment(self, column: str) -> None:
        self.calls.append(("increment", column))


def test_bump_command_increments_and_returns_the_new_value() -> None:
    row = _FakeRow()
    api = SimpleNamespace(tables={"NB_Global": SimpleNamespace(rows={"u": row})})
    cmd = BumpNbCfgCommand(api, "123.0")
    cmd.run_idl(None)
    assert row.calls == [
        ("setkey", "external_ids", BUMP_MARK_KEY, "123.0"),
        ("increment", "nb_cfg"),
    ]
    cmd.post_commit(SimpleNamespace(get_increment_new_value=lambda: 42))
    assert cmd.result == 42


def test_bump_command_without_nb_global_fails() -> None:
    api = SimpleNamespace(tables={"NB_Global": SimpleNamespace(rows={})})
    with pytest.raises(RuntimeError, match="NB_Global"):
        BumpNbCfgCommand(api, "1").run_idl(None)


def test_timestamps_and_detection_latency() -> None:
    assert _timestamp_ms(SimpleNamespace(nb_cfg_timestamp=1000)) == 1000.0
    assert _timestamp_ms(SimpleNamespace(nb_cfg_timestamp=[1000])) == 1000.0
    assert _timestamp_ms(SimpleNamespace(nb_cfg_timestamp=0)) is None
    assert _timestamp_ms(SimpleNamespace()) is None
    ctx = SimpleNamespace(evidence=Evidence("nb-cfg", 1005.5, "", committed_ms=1000.0))
    assert _detection_latency(cast(Any, ctx)) == 5.5
    ctx = SimpleNamespace(evidence=Evidence("claim", 1005.5, ""))
    assert _detection_latency(cast(Any, ctx)) is None
    assert _detection_latency(cast(Any, SimpleNamespace(evidence=None))) is None
