"""``path-ready``: ``port-ready`` AND every chassis that can send to the VM tunnels to
the destination.

Why this signal: ``port-ready`` proves the destination can deliver to the port, but the
client sits on another chassis (hv3 in the lab). Its ovn-controller decides where a
packet for the VM goes: ``reg15=<port key>,metadata=<datapath key>`` -> ``output:<tunnel
to the port's chassis>``. After the claim, with a multi-chassis binding, it must clone to
the source AND the destination tunnel. If that chassis is busy (``--stall peer:2000``
freezes its ovn-controller), its flow still tunnels only to the source; after switchover
the source is gone and the client's packets are black-holed until the peer catches up.
``claim`` (an SB row written by the destination) and ``port-ready`` (the destination's
own bridge) cannot see that: both are about the destination, the blackout is on the peer.

The check, all event-driven, with no cluster-wide write (Neutron master's ``nb_cfg`` bump
makes every chassis write its Chassis_Private row; this reads only):

1. Arm: arm ``port-ready`` (composed, not copied); compute the peer chassis set from the
   SB (:func:`cutover.readiness.peers.peer_chassis`: same switch, or across logical
   routers via patch ``options:peer``; gateway chassis included; source and destination
   excluded); for each peer start an OpenFlow flow monitor (``ovs-ofctl monitor br-int
   watch:reg15=KEY,metadata=DP``) on its own br-int, and an Open_vSwitch watch for a
   tunnel Interface towards the destination's encap IP (a late tunnel port re-checks).
2. Wait: one deadline for everything. ``port-ready`` runs in a helper thread; on every
   flow-monitor or OVSDB event the peers whose flows changed are re-dumped (filtered
   ``dump-flows``) and classified: ready when a flow for the port outputs to the tunnel
   ofport whose ``options:remote_ip`` is one of the destination's encap IPs.
3. Timeout: ``WaitTimeout`` names every peer and what its flows did (which tunnels they
   output to, or "no flow"), plus port-ready's state if it was not ready either.

Evidence: port-ready's detail plus one line per peer; marks ``peer.ready <chassis>`` at
the flow-monitor event that preceded the dump that found the peer ready.
``committed_ms`` (detection latency) is port-ready's when the destination was the last
to become ready, else None (a peer writes no timestamp for a remote port's flows).

Cost: one ``ovs-ofctl monitor`` process per peer for the duration of the wait, plus one
small filtered dump per flow change; nothing is written anywhere.

OVN versions: the remote-output table is 39 on 23.03 and moved on later releases (e.g.
24.x/25.x renumbered the physical tables), so no table number is used: flows are matched
on ``reg15``/``metadata`` and judged by their ``output:`` actions (also inside
``clone(...)``). Multi-chassis cloning (OVN 22.06+) is what makes a peer output to both
tunnels; the tunnel port name (``ovn-<chassis>-0``) is not relied on either, only the
Interface type and ``options:remote_ip`` read from the peer's local Open_vSwitch DB.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cutover.chassis.liveness import Watched
from cutover.errors import InvalidMigration, WaitTimeout
from cutover.ovsdb.connection import Watch, now_ms
from cutover.ovsdb.sb import SbClient
from cutover.ovsdb.vswitch import VswitchClient
from cutover.readiness.base import Evidence, ReadinessCheck
from cutover.readiness.flows import BridgeFlows, FlowCheckError, FlowMonitor
from cutover.readiness.peers import (
    TUNNEL_TYPES,
    PeerPath,
    binding_rows,
    classify_peer,
    peer_chassis,
    tunnel_ofports,
)
from cutover.readiness.port_ready import (
    CHECK_RETRY_MS,
    MONITOR_READY_S,
    PortReadyReadiness,
    rundir_for,
)
from cutover.site import ChassisEndpoint, VmSpec


@dataclass
class _Peer:
    name: str
    ports: tuple[str, ...]
    bridge: BridgeFlows
    vswitch: VswitchClient
    monitor: FlowMonitor | None = None
    tunnel_watch: Watch | None = None
    dirty: bool = True
    last_event_ms: float | None = None
    last: PeerPath | None = None
    ready_ms: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = str(self.last) if self.last is not None else f"{self.name}: not checked yet"
        if self.monitor is not None and self.monitor.error:
            text += f" (flow monitor: {self.monitor.error})"
        if self.error:
            text += f" (last dump failed: {self.error})"
        return text


class PathReadyReadiness:
    name = "path-ready"

    def __init__(self, sb: SbClient, vswitch: dict[str, VswitchClient],
                 chassis: Mapping[str, ChassisEndpoint],
                 port_ready: ReadinessCheck | None = None) -> None:
        """``chassis``: every chassis of the site by name (the peers are looked up there)."""
        self._sb = sb
        self._vswitch = vswitch
        self._chassis = chassis
        self._interrupted: BaseException | None = None
        self._port: ReadinessCheck = port_ready or PortReadyReadiness(sb, vswitch)
        self._changed = threading.Event()
        self._lock = threading.Lock()
        self._peers: list[_Peer] = []
        self._armed = False

    # -- arming -----------------------------------------------------------------------

    def arm(self, vm: VmSpec, src: ChassisEndpoint, dst: ChassisEndpoint) -> None:
        self.disarm()
        self._vm, self._dst = vm, dst
        self._port.arm(vm, src, dst)
        self._armed = True
        rows = self._sb.rows("Port_Binding")
        me = next((r for r in rows if r.logical_port == vm.lsp), None)
        if me is None:
            self._port_key, self._dp_key = -1, -1
            peers: dict[str, tuple[str, ...]] = {}
        else:
            self._port_key, self._dp_key = int(me.tunnel_key), int(me.datapath.tunnel_key)
            peers = peer_chassis(binding_rows(rows), vm.lsp, src.name, dst.name)
        self._dst_ips = self._encap_ips(dst)
        self._interrupted = None
        unknown = sorted(set(peers) - (set(self._vswitch) & set(self._chassis)))
        if unknown:
            raise InvalidMigration(
                f"chassis {', '.join(unknown)} host ports that send to {vm.lsp} but are not "
                "in the site, so path-ready cannot check their flows; add them to the site "
                "or use port-ready"
            )
        for name, ports in peers.items():
            endpoint = self._chassis[name]
            bridge = BridgeFlows(rundir_for(endpoint), endpoint.integration_bridge)
            peer = _Peer(name, ports, bridge, self._vswitch[name])
            self._peers.append(peer)
            self._start(peer)

    def _encap_ips(self, dst: ChassisEndpoint) -> tuple[str, ...]:
        ips: set[str] = set()
        for ch in self._sb.rows("Chassis"):
            if ch.name == dst.name:
                ips.update(str(e.ip) for e in ch.encaps)
        if dst.encap_ip:
            ips.add(dst.encap_ip)
        return tuple(sorted(ips))

    def _start(self, peer: _Peer) -> None:
        dst_ips = set(self._dst_ips)

        def tunnel_up(r: Any) -> bool:
            """A tunnel to the destination with its ofport (a late one re-checks)."""
            ok = bool(r.type in TUNNEL_TYPES and r.options.get("remote_ip") in dst_ips
                      and tunnel_ofports([r], [r.name]))
            if ok:
                self._mark_dirty(peer)
            return ok

        peer.tunnel_watch = peer.vswitch.register(
            "Interface", tunnel_up, f"a tunnel from {peer.name} to {self._dst.name}",
            lambda: f"Interfaces of {peer.name}",
        )
        try:
            peer.monitor = FlowMonitor(
                peer.bridge, [f"reg15={self._port_key},metadata={self._dp_key}"],
                lambda: self._mark_dirty(peer),
            )
        except FlowCheckError as e:
            peer.error = str(e)

    def _mark_dirty(self, peer: _Peer) -> None:
        with self._lock:
            peer.dirty = True
            peer.last_event_ms = now_ms()
        self._changed.set()

    def vital(self) -> Sequence[Watched]:
        """The destination and every peer: a dead peer's flows are frozen where they were."""
        return (*self._port.vital(),
                *(Watched(self._chassis[p.name], "peer") for p in self._peers))  # fmt: skip

    def interrupt(self, cause: BaseException) -> None:
        self._interrupted = cause
        self._port.interrupt(cause)
        self._changed.set()

    def disarm(self) -> None:
        for peer in self._peers:
            if peer.tunnel_watch is not None:
                peer.tunnel_watch.cancel()
            if peer.monitor is not None:
                peer.monitor.stop()
        self._peers = []
        if self._armed:
            self._port.disarm()
            self._armed = False

    # -- waiting ----------------------------------------------------------------------

    def wait(self, timeout_s: float) -> Evidence:
        assert self._armed, "arm() first"
        deadline = now_ms() + timeout_s * 1000.0
        result: list[Evidence] = []
        failure: list[BaseException] = []

        def port_wait() -> None:
            try:
                result.append(self._port.wait(timeout_s))
            except BaseException as e:  # handed to the waiting thread
                failure.append(e)
            finally:
                self._changed.set()

        worker = threading.Thread(target=port_wait, name="path-ready-port", daemon=True)
        worker.start()
        try:
            while True:
                self._changed.clear()
                if self._interrupted is not None:
                    raise self._interrupted
                retry = self._check_peers()
                t = now_ms()
                if failure and not isinstance(failure[0], WaitTimeout):
                    raise failure[0]
                peers_ready = all(p.ready_ms is not None for p in self._peers)
                if result and peers_ready:
                    return self._evidence(result[0])
                if t >= deadline or failure:
                    worker.join()
                    raise WaitTimeout(
                        f"the path to {self._vm.lsp} on {self._dst.name} from "
                        f"{', '.join(p.name for p in self._peers) or 'no peer'}",
                        timeout_s, self._describe(failure),
                    )
                until = min(deadline, t + CHECK_RETRY_MS) if retry else deadline
                self._changed.wait(max(0.0, (until - t) / 1000.0))
        finally:
            worker.join(timeout=timeout_s + 5.0)
            self.disarm()

    def _check_peers(self) -> bool:
        """Re-dump the peers whose flows (or tunnels) changed; True if a retry is due (a
        dump failed, or a peer has no working flow monitor: bounded retries instead)."""
        retry = False
        for peer in self._peers:
            if peer.ready_ms is not None:
                continue
            if peer.monitor is not None:
                peer.monitor.ready.wait(MONITOR_READY_S)
            with self._lock:
                alive = peer.monitor is not None and peer.monitor.alive
                if not peer.dirty and alive and peer.last is not None:
                    continue
                peer.dirty = False
            try:
                flows = peer.bridge.dump(f"reg15={self._port_key},metadata={self._dp_key}")
            except FlowCheckError as e:
                peer.error = str(e)
                retry = True
                with self._lock:
                    peer.dirty = True
                continue
            peer.error = None
            if not alive:  # no flow monitor: nothing would wake us up for a change
                retry = True
            tunnels = tunnel_ofports(peer.vswitch.rows("Interface"),
                                     peer.vswitch.port_names(peer.bridge.bridge))
            peer.last = classify_peer(peer.name, flows, self._port_key, self._dp_key,
                                      tunnels, self._dst_ips)
            if peer.last.ready:
                seen = now_ms()
                with self._lock:  # the latest change event before this verdict
                    event_ms = peer.last_event_ms
                peer.ready_ms = min(seen, event_ms) if event_ms is not None else seen
                peer.notes.append(f"verified {seen - peer.ready_ms:.1f} ms after the event")
        return retry

    def _evidence(self, port: Evidence) -> Evidence:
        peers = self._peers
        last_peer = max((p.ready_ms for p in peers if p.ready_ms is not None), default=None)
        seen = max(port.seen_ms, last_peer) if last_peer is not None else port.seen_ms
        committed = port.committed_ms if seen == port.seen_ms else None
        lines = []
        marks = list(port.marks)
        marks.append((f"{port.check}.seen", port.seen_ms, port.detail))
        for p in self._peers:
            if p.ready_ms is not None:
                lines.append(f"peer {p.last} ready at +{p.ready_ms - port.seen_ms:.1f} ms vs "
                             f"{port.check} ({'; '.join(p.notes)})")
                marks.append((f"peer.ready {p.name}", p.ready_ms, str(p.last)))
            else:
                lines.append(f"peer {p.describe()}")
        peer_text = "; ".join(lines) if lines else "no peer chassis"
        detail = (f"peers [{', '.join(p.name for p in self._peers)}] reach "
                  f"{self._dst.name}: {peer_text} | {port.check}: {port.detail}")
        return Evidence(self.name, seen, detail, committed_ms=committed,
                        marks=tuple(sorted(marks, key=lambda m: m[1])))

    def _describe(self, failure: list[BaseException]) -> str:
        peers = "; ".join(p.describe() for p in self._peers) or "no peer chassis"
        text = f"peers (port key {self._port_key}, datapath key {self._dp_key}): {peers}"
        if failure:
            text += f"; destination not ready either: {failure[0]}"
        return text
