"""A peer's half of ``path-ready``: this chassis tunnels a remote port's traffic to the
migration's destination.

The peer's ovn-controller decides where a packet for the VM goes: ``reg15=<port key>,
metadata=<datapath key> -> output:<tunnel>``. With a multi-chassis binding it must clone to
the source AND the destination tunnel; a busy peer still tunnels only to the source, and
after the switchover its packets are black-holed until it catches up. Only the peer's own
br-int can tell.

All event-driven: an ``ovs-ofctl monitor br-int watch:reg15=KEY,metadata=DP`` on the peer's
bridge and an Open_vSwitch watch for a tunnel Interface towards the destination's encap IP
(a late tunnel port re-checks) wake a check of the monitor's live copy of those flows
(:mod:`cutover.chassis.flowstate`; a filtered dump when the copy is unusable), classified
by :func:`cutover.chassis.tunnels.classify_peer`. Nothing is written anywhere locally.
"""

from __future__ import annotations

import threading
from typing import Any

from cutover.chassis.base import PathTarget
from cutover.chassis.flows import BridgeFlows, FlowCheckError, FlowMonitor
from cutover.chassis.port_flows import MONITOR_READY_S, REVALIDATE_MS
from cutover.chassis.port_watch import CHECK_RETRY_MS
from cutover.chassis.tunnels import TUNNEL_TYPES, PeerPath, classify_peer, tunnel_ofports
from cutover.errors import WaitTimeout
from cutover.evidence import Evidence
from cutover.ovsdb.connection import Watch, now_ms
from cutover.ovsdb.vswitch import VswitchClient

CHECK = "peer-path"


class LocalPathWatch:
    """One armed peer check (see the module docstring)."""

    def __init__(self, chassis: str, vswitch: VswitchClient, bridge: BridgeFlows,
                 target: PathTarget) -> None:
        self.chassis, self.target = chassis, target
        self._vs, self._bridge = vswitch, bridge
        self._match = f"reg15={target.port_key},metadata={target.datapath_key}"
        self._changed = threading.Event()
        self._lock = threading.Lock()
        self._dirty = True
        self._last_event_ms: float | None = None
        self._dumped_ms = 0.0
        self._last: PeerPath | None = None
        self._error: str | None = None
        self._interrupted: BaseException | None = None
        dst_ips = set(target.dst_ips)

        def tunnel_up(r: Any) -> bool:
            """A tunnel to the destination with its ofport (a late one re-checks)."""
            ok = bool(r.type in TUNNEL_TYPES and r.options.get("remote_ip") in dst_ips
                      and tunnel_ofports([r], [r.name]))
            if ok:
                self._mark_dirty()
            return ok

        self._tunnel: Watch | None = vswitch.register(
            "Interface", tunnel_up, f"a tunnel from {chassis} to {target.dst}",
            lambda: f"Interfaces of {chassis}",
        )
        self._monitor: FlowMonitor | None = None
        try:
            self._monitor = FlowMonitor(bridge, [self._match], self._mark_dirty, live=True)
        except FlowCheckError as e:
            self._error = str(e)

    def _mark_dirty(self) -> None:
        with self._lock:
            self._dirty = True
            self._last_event_ms = now_ms()
        self._changed.set()

    # -- Watch ---------------------------------------------------------------------------

    def interrupt(self, cause: BaseException) -> None:
        self._interrupted = cause
        self._changed.set()

    def cancel(self) -> None:
        self._release()
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None

    def _release(self) -> None:
        """Stop the OVSDB watch; :meth:`cancel` stops the monitor: the verdict is
        published before the clean-up, as in port-ready."""
        if self._tunnel is not None:
            self._tunnel.cancel()
            self._tunnel = None

    def wait(self, timeout_s: float) -> Evidence:
        """Ready when a flow for the port outputs to the tunnel whose ``remote_ip`` is one
        of the destination's encap IPs. ``seen_ms`` is the flow-monitor event that preceded
        the dump which found it (the dump itself takes a few ms)."""
        deadline = now_ms() + timeout_s * 1000.0
        try:
            while True:
                self._changed.clear()
                if self._interrupted is not None:
                    raise self._interrupted
                retry, ready_ms = self._check()
                t = now_ms()
                if ready_ms is not None:
                    assert self._last is not None
                    return Evidence(CHECK, ready_ms, f"{self._last} (verified "
                                    f"{t - ready_ms:.1f} ms after the event)")  # fmt: skip
                if t >= deadline:
                    raise WaitTimeout(f"{self.chassis} to tunnel {self.target.lsp} to "
                                      f"{self.target.dst}", timeout_s, self.describe())
                until = min(deadline, t + CHECK_RETRY_MS) if retry else deadline
                self._changed.wait(max(0.0, (until - t) / 1000.0))
        except BaseException:
            self._release()
            raise
        # a verdict: the OVSDB watches are released by cancel(), which every owner calls
        # after handing the verdict on - unregistering waits for the IDL thread's lock

    def _check(self) -> tuple[bool, float | None]:
        """(retry due, ready since ms or None). From the monitor's live copy when it has
        one; a copy that says "not ready" is checked by a dump at most every
        :data:`~cutover.chassis.port_flows.REVALIDATE_MS` (monitors were seen missing
        updates). Without a copy: re-dump if the flows or tunnels changed. A retry is due
        when a dump failed, no flow monitor runs, or a copy awaits its next check."""
        if self._monitor is not None:
            self._monitor.ready.wait(MONITOR_READY_S)
        live = self._monitor.flows() if self._monitor is not None else None
        revalidate = live is not None and now_ms() - self._dumped_ms >= REVALIDATE_MS
        with self._lock:
            alive = self._monitor is not None and self._monitor.alive
            if not self._dirty and alive and self._last is not None and not revalidate:
                return live is not None, None
            self._dirty = False
            event_ms = self._last_event_ms
        tunnels = tunnel_ofports(self._vs.rows("Interface"),
                                 self._vs.port_names(self._bridge.bridge))  # fmt: skip
        t = self.target
        if live is not None:  # the monitor's live copy: no ovs-ofctl round trip
            self._last = classify_peer(self.chassis, live, t.port_key, t.datapath_key,
                                       tunnels, t.dst_ips)  # fmt: skip
            if self._last.ready:
                seen = now_ms()
                return False, min(seen, event_ms) if event_ms is not None else seen
            if not revalidate:  # a dump checks a "not ready" copy now and then
                return True, None
        try:
            self._dumped_ms = now_ms()
            flows = self._bridge.dump(self._match)
        except FlowCheckError as e:
            self._error = str(e)
            with self._lock:
                self._dirty = True
            return True, None
        self._error = None
        self._last = classify_peer(self.chassis, flows, t.port_key, t.datapath_key, tunnels,
                                   t.dst_ips)  # fmt: skip
        if not self._last.ready:
            return not alive or live is not None, None
        seen = now_ms()
        return False, min(seen, event_ms) if event_ms is not None else seen

    def describe(self) -> str:
        text = str(self._last) if self._last is not None else f"{self.chassis}: not checked yet"
        if self._monitor is not None and self._monitor.error:
            text += f" (flow monitor: {self._monitor.error})"
        if self._error:
            text += f" (last dump failed: {self._error})"
        return text
