"""Where port-ready reads one port's flows from: a live copy kept by OpenFlow flow
monitors, checked by background dumps (:class:`PortFlowSource`).

The monitors (``ovs-ofctl monitor``, one per filter of :attr:`PortTarget.filters`) stream
every change of the port's flows; their reports are kept as a live copy
(:mod:`cutover.chassis.flowstate`) and judged at every event
(:func:`cutover.chassis.flows.classify`), so no ``ovs-ofctl`` round trip sits between the
last change and the verdict. The copy was seen missing updates, so while it says "not
ready" a ``dump-flows`` in the background checks it (:data:`REVALIDATE_MS`,
:data:`EVENT_DUMP_DELAY_MS`); without a usable copy the port is dumped in the foreground
whenever the monitors saw a change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cutover.chassis.flows import (
    BridgeFlows,
    FlowCheckError,
    FlowMonitor,
    PortFlows,
    PortTarget,
    classify,
)
from cutover.chassis.port_verdict import complete
from cutover.ovsdb.connection import now_ms

MONITOR_READY_S = 1.0
"""How long a foreground check waits for the monitors' initial replies."""
REVALIDATE_MS = 200.0
"""While the monitors' live copy says "not ready", a ``dump-flows`` in the background checks
it :data:`EVENT_DUMP_DELAY_MS` after an OVSDB event of the wait and at least this often:
the copy was seen missing updates (all three monitors silent for 10 s while ovn-controller
added the port's rarp blocks: 2 of 7 runs of test_port_ready.py's flows-only test with one
monitor process per watch), and a copy that missed an addition would otherwise wait for
nothing. A dump that finds the flows complete overrides the copy (counted in the
evidence)."""
EVENT_DUMP_DELAY_MS = 25.0
"""The background dump an OVSDB event calls for starts this long after the event, and only
if the live copy still says "not ready" then. The claim, ``ovn-installed`` and the port's
flows arrive within a few ms of each other; a dump started at the first of them spawned
three ``ovs-ofctl`` processes, and made ovs-vswitchd answer them, right while the rest
arrived - on 2 cores, 0.2-7 ms (median ~2) between the last input and the verdict. A copy
that did miss an update is now found 25 ms later instead of at once."""


class PortFlowSource:
    """One port's flows on one bridge, as they are now (see the module docstring).

    ``on_change`` is called (from a monitor's reader thread, or a dump's) whenever what
    :meth:`check` would return may have changed. Attributes read by the evidence:
    ``last`` (the last judgement), ``flows_ms`` (since when it is known to hold),
    ``dump_started_ms``, ``blocks_new``, and the counters ``checks`` (foreground dumps),
    ``live_checks``, ``copy_missed``."""

    def __init__(self, bridge: BridgeFlows, tap: str, on_change: Callable[[], None]) -> None:
        self._bridge, self._tap, self._on_change = bridge, tap, on_change
        self.monitor: FlowMonitor | None = None
        self.target: PortTarget | None = None
        self._dirty = threading.Event()
        """Set by the flow monitor: this port's flows changed since the last dump."""
        self.last: PortFlows | None = None
        self.flows_ms: float | None = None
        """Since when ``last`` is known to hold: the monitor's last update before it (live
        copy), or the start of the dump."""
        self.dump_started_ms: float | None = None
        """Since when the last flow check's result is known to hold."""
        self.checks = 0
        self.live_checks = 0
        self.copy_missed = 0
        """Times a background dump found the flows complete while the copy did not."""
        self.error: str | None = None
        self.blocks_new = False
        """The rarp blocks were not in the monitors' initial replies (the claim may then be
        shown by them, ``port_verdict.claim_shown_by_flows``); False with dumps only."""
        self._initial_judged: tuple[int, int] | None = None
        """(monitor, lines of its initial replies) ``blocks_new`` was judged from."""
        self._validator: threading.Thread | None = None
        self._validated: tuple[float, PortFlows] | None = None
        """(start ms, verdict) of the last background dump."""
        self._validate_started_ms = 0.0
        self._woke_ms: float | None = None
        """When an OVSDB event first woke the wait since the last background dump started
        (a dump is due :data:`EVENT_DUMP_DELAY_MS` later)."""

    @property
    def started(self) -> bool:
        return self.monitor is not None

    def start(self, target: PortTarget) -> None:
        """Start the monitors on ``target`` (once the TAP's ofport and the keys are known)."""
        self.monitor = self._bridge.monitor(target, self._changed, live=True)
        self.target = target

    def _changed(self) -> None:
        self._dirty.set()
        self._on_change()

    def note_event(self, at_ms: float) -> None:
        """An OVSDB event woke the wait: a background dump becomes due a little later."""
        if self._woke_ms is None:
            self._woke_ms = at_ms

    def dump_due(self) -> float:
        """When the next background dump is due (wall ms) while the copy says "not ready"."""
        due = self._validate_started_ms + REVALIDATE_MS
        woke = self._woke_ms
        return min(due, woke + EVENT_DUMP_DELAY_MS) if woke is not None else due

    def recheck_due(self) -> float | None:
        """When the wait should look again although nothing woke it, if ever."""
        if self._validator is not None or (self.monitor is not None
                                           and self.monitor.flows() is not None):
            return self.dump_due()  # the background dump reports back, or is due then
        return None

    @property
    def failing(self) -> bool:
        """A dump failed, or no monitor would report a change: the wait must retry."""
        return self.error is not None or (self.monitor is not None and not self.monitor.alive)

    def live(self) -> PortFlows | None:
        """The port's flows from the monitors' live copy; None while it is not usable
        (monitors not started or not answered yet, or the copy lost). Reads no IDL,
        waits for nothing: callable from an IDL thread."""
        monitor, target = self.monitor, self.target
        if monitor is None or target is None or not monitor.ready.is_set():
            return None
        live = monitor.flows()
        if live is None:
            return None
        judged = (id(monitor), monitor.n_initial())
        if self._initial_judged != judged:  # the initial replies, judged once read
            # were the blocks there before the monitors started? (a line read is kept)
            initial = monitor.initial_flows() or []
            first = classify(initial, initial, initial, target)
            self.blocks_new = not (first.blocked or first.rarp_to_controller)
            self._initial_judged = judged
        self._dirty.clear()
        self.dump_started_ms = now_ms()
        verdict = classify(live, live, live, target)
        self.live_checks += 1
        self.last, self.flows_ms = verdict, monitor.changed_ms
        return verdict

    def check(self, awaits: bool) -> PortFlows | None:
        """The port's flows as they are now (:meth:`start` first): the live copy, checked
        by a background dump while it says "not ready"; without a usable copy, a dump
        (only when the monitors saw a change since the last one). None if a dump failed
        (``error`` says why). ``awaits``: the port awaits its rarp activation here."""
        assert self.monitor is not None and self.target is not None
        self.monitor.ready.wait(MONITOR_READY_S)
        verdict = self.live()
        if verdict is not None:  # the monitors' copy: no ovs-ofctl on the critical path
            validated = self._validated
            if complete(verdict, awaits) or validated is None or not complete(
                    validated[1], awaits):
                if not complete(verdict, awaits) and self.dump_due() <= now_ms():
                    self._validate()
                return verdict
            # the copy missed an update that a dump has seen: the dump is the truth
            self.copy_missed += 1
            self._validated = None
            self.last, self.flows_ms = validated[1], validated[0]
            return self.last
        if self.last is not None and not self._dirty.is_set() and self.monitor.alive:
            self.dump_started_ms = now_ms()  # unchanged since: the last dump is current
            return self.last
        self._dirty.clear()
        self.dump_started_ms = now_ms()
        try:
            self.last = self._bridge.port_flows(self.target)
        except FlowCheckError as e:
            self.error = str(e)
            self._dirty.set()
            return None
        self.flows_ms = self.dump_started_ms
        self.error = None
        self.checks += 1
        return self.last

    def _validate(self) -> None:
        """Dump the port's flows in the background (see :data:`REVALIDATE_MS`)."""
        if self._validator is not None and self._validator.is_alive():
            return
        assert self.target is not None
        target, started = self.target, now_ms()
        self._validate_started_ms, self._woke_ms = started, None

        def run() -> None:
            try:
                self._validated = (started, self._bridge.port_flows(target))
            except FlowCheckError as e:
                self.error = str(e)
            self._on_change()

        self._validator = threading.Thread(target=run, name=f"validate-{self._tap}",
                                           daemon=True)  # fmt: skip
        self._validator.start()

    def problems(self) -> str:
        """What went wrong with the monitors or the last dump ("" if nothing)."""
        said = ""
        if self.monitor is not None and self.monitor.error:
            said = f"; flow monitor: {self.monitor.error}"
        if self.error is not None:
            said += f"; last flow dump failed: {self.error}"
        return said

    def stop(self) -> None:
        """Stop the monitors and wait for a background dump (idempotent)."""
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        if self._validator is not None:
            self._validator.join(timeout=10.0)  # its dump ends within OFCTL_TIMEOUT_S
            self._validator = None
