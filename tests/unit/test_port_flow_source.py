"""chassis/port_flows.py and the flow monitor's reader (chassis/flows.py): when a
background dump is due, and that a burst of monitor lines wakes the wait once. The
monitor runs a stand-in ``ovs-ofctl`` (a shell script printing what the real one prints)."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from cutover.chassis.flows import BridgeFlows, FlowMonitor, PortTarget
from cutover.chassis.port_flows import EVENT_DUMP_DELAY_MS, REVALIDATE_MS, PortFlowSource


def test_an_ovsdb_event_makes_a_dump_due_a_little_later_not_at_once() -> None:
    source = PortFlowSource(BridgeFlows("/nonexistent"), "tap0", lambda: None)
    assert source.dump_due() == REVALIDATE_MS  # never dumped: due at once (time 0 + period)
    source._validate_started_ms = 10_000.0
    assert source.dump_due() == 10_000.0 + REVALIDATE_MS
    source.note_event(10_050.0)
    source.note_event(10_060.0)  # the first event since the last dump counts
    assert source.dump_due() == 10_050.0 + EVENT_DUMP_DELAY_MS


_OFCTL = r"""#!/bin/sh
# a stand-in for `ovs-ofctl --no-names monitor br-int watch:...`: one initial reply,
# then a burst of 30 added flows written at once, then it stays (as the real one does)
echo 'NXST_FLOW_MONITOR reply (xid=0x4):'
i=0; out=''
while [ $i -lt 30 ]; do
  out="$out event=ADDED table=0 cookie=0x1 in_port=7,nw_tos=$i actions=drop
"
  i=$((i + 1))
done
printf '%s' "$out"
exec sleep 30
"""


def test_a_burst_of_monitor_lines_wakes_the_wait_once(tmp_path: Path) -> None:
    script = tmp_path / "ovs-ofctl"
    script.write_text(_OFCTL)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    woke: list[int] = []
    changed = threading.Condition()

    def on_change() -> None:
        with changed:
            woke.append(1)
            changed.notify_all()

    source = PortFlowSource(BridgeFlows(str(tmp_path), ofctl=(str(script),)), "tap0",
                            on_change)
    source.start(PortTarget(7, 2, 1, "02:00:00:00:00:01"))
    monitor = source.monitor
    assert monitor is not None
    try:
        with changed:
            assert changed.wait_for(lambda: len(monitor.flows() or []) == 30, 10), (
                f"the monitors' burst was not all read: {monitor.flows()}")
        # three monitor processes (one per filter), 30 lines each, one pipe read each
        assert 1 <= len(woke) < 30, f"woken {len(woke)} times: once per line, not per read"
    finally:
        source.stop()


_OFCTL_SPLIT = r"""#!/bin/sh
# an initial reply of 12 flows whose last lines come in a later write (a pipe read can end
# anywhere in a long reply)
i=0; out='NXST_FLOW_MONITOR reply (xid=0x4):
'
while [ $i -lt 12 ]; do
  out="$out event=ADDED table=0 cookie=0x1 in_port=7,nw_tos=$i actions=drop
"
  i=$((i + 1))
done
printf '%s' "$out" | head -c 200
sleep 0.5
printf '%s' "$out" | tail -c +201
exec sleep 30
"""


def test_the_live_copy_is_ready_only_with_the_whole_initial_reply(tmp_path: Path) -> None:
    """``ready`` (and a usable copy) only once the flows listed after the initial reply's
    header are all read: a copy judged earlier would lack flows that are there - the
    port's rarp blocks, whose absence pre-activation's verdict reads as "open"."""
    script = tmp_path / "ovs-ofctl"
    script.write_text(_OFCTL_SPLIT)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monitor = FlowMonitor(BridgeFlows(str(tmp_path), ofctl=(str(script),)), ["in_port=7"],
                          lambda: None, live=True)  # fmt: skip
    try:
        assert monitor.ready.wait(10), monitor.error
        flows = monitor.flows()
        assert flows is not None and len(flows) == 12, flows
    finally:
        monitor.stop()
