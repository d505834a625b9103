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
   excluded); arm a peer check on each peer through the chassis seam
   (:mod:`cutover.chassis.path_watch`: a flow monitor on the peer's own br-int and a
   watch for a tunnel towards the destination's encap IP).
2. Wait: one deadline for everything; every check was armed at once, so waiting for them
   in turn costs nothing, and each one's time is the event that made it ready.
3. Timeout: ``WaitTimeout`` names every peer and what its flows did (which tunnels they
   output to, or "no flow"), plus port-ready's state if it was not ready either.

Evidence: port-ready's detail plus one line per peer; marks ``peer.ready <chassis>`` at
the flow-monitor event that preceded the dump that found the peer ready.
``committed_ms`` (detection latency) is port-ready's when the destination was the last
to become ready, else None (a peer writes no timestamp for a remote port's flows).

Cost: one ``ovs-ofctl monitor`` process per peer for the duration of the wait, plus one
small filtered dump per flow change, where the peer's flows are; through agents, one SB
key per peer (``Chassis_Private(peer).external_ids``), removed when the wait ends.

OVN versions: the remote-output table is 39 on 23.03 and moved on later releases (e.g.
24.x/25.x renumbered the physical tables), so no table number is used: flows are matched
on ``reg15``/``metadata`` and judged by their ``output:`` actions (also inside
``clone(...)``). Multi-chassis cloning (OVN 22.06+) is what makes a peer output to both
tunnels; the tunnel port name (``ovn-<chassis>-0``) is not relied on either, only the
Interface type and ``options:remote_ip`` read from the peer's local Open_vSwitch DB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cutover.chassis.base import Chassis, PathTarget, Watch
from cutover.errors import InvalidMigration, WaitTimeout
from cutover.evidence import Evidence
from cutover.ovsdb.connection import now_ms
from cutover.ovsdb.sb import SbClient
from cutover.readiness.base import ReadinessCheck
from cutover.readiness.peers import binding_rows, peer_chassis
from cutover.readiness.port_ready import PortReadyReadiness
from cutover.site import ChassisEndpoint, VmSpec


class PathReadyReadiness:
    name = "path-ready"

    def __init__(self, sb: SbClient, chassis: Mapping[str, Chassis],
                 port_ready: ReadinessCheck | None = None) -> None:
        """``chassis``: every chassis of the site by name (the peers are looked up there)."""
        self._sb = sb
        self._chassis = chassis
        self._port: ReadinessCheck = port_ready or PortReadyReadiness(chassis)
        self._peers: dict[str, Watch] = {}
        self._armed = False

    def arm(self, vm: VmSpec, src: ChassisEndpoint, dst: ChassisEndpoint) -> None:
        self.disarm()
        self._vm, self._dst = vm, dst
        rows = self._sb.rows("Port_Binding")
        me = next((r for r in rows if r.logical_port == vm.lsp), None)
        peers = {} if me is None else peer_chassis(binding_rows(rows), vm.lsp, src.name,
                                                   dst.name)  # fmt: skip
        unknown = sorted(set(peers) - set(self._chassis))
        if unknown:
            raise InvalidMigration(
                f"chassis {', '.join(unknown)} host ports that send to {vm.lsp} but are not "
                "in the site, so path-ready cannot check their flows; add them to the site "
                "or use port-ready"
            )
        self._port.arm(vm, src, dst)
        self._armed = True
        if me is None:
            return
        target = PathTarget(vm.lsp, int(me.tunnel_key), int(me.datapath.tunnel_key),
                            dst.name, self._encap_ips(dst))  # fmt: skip
        for name in peers:
            self._peers[name] = self._chassis[name].watch_path(target)

    def _encap_ips(self, dst: ChassisEndpoint) -> tuple[str, ...]:
        ips: set[str] = set()
        for ch in self._sb.rows("Chassis"):
            if ch.name == dst.name:
                ips.update(str(e.ip) for e in ch.encaps)
        if dst.encap_ip:
            ips.add(dst.encap_ip)
        return tuple(sorted(ips))

    def vital(self) -> Sequence[tuple[str, str]]:
        """The destination and every peer: a dead peer's flows are frozen where they were."""
        return (*self._port.vital(), *((name, "peer") for name in self._peers))

    def interrupt(self, cause: BaseException) -> None:
        self._port.interrupt(cause)
        for watch in self._peers.values():
            watch.interrupt(cause)

    def disarm(self) -> None:
        for watch in self._peers.values():
            watch.cancel()
        self._peers = {}
        if self._armed:
            self._port.disarm()
            self._armed = False

    def wait(self, timeout_s: float) -> Evidence:
        assert self._armed, "arm() first"
        deadline = now_ms() + timeout_s * 1000.0

        def left() -> float:
            return max(0.0, (deadline - now_ms()) / 1000.0)

        failures: list[str] = []
        port: Evidence | None = None
        peers: dict[str, Evidence] = {}
        try:
            try:
                port = self._port.wait(timeout_s)
            except WaitTimeout as e:
                failures.append(f"destination not ready: {e}")
            for name, watch in self._peers.items():
                try:
                    peers[name] = watch.wait(left())
                except WaitTimeout as e:
                    failures.append(f"peer {e.seen}")
            if port is None or failures:
                ready = [*peers, *([] if port is None else ["the destination"])]
                raise WaitTimeout(
                    f"the path to {self._vm.lsp} on {self._dst.name} from "
                    f"{', '.join(self._peers) or 'no peer'}", timeout_s,
                    f"{'; '.join(failures)}; ready: {', '.join(ready) or 'nothing'}",
                )
            return self._evidence(port, peers)
        finally:
            self.disarm()

    def _evidence(self, port: Evidence, peers: Mapping[str, Evidence]) -> Evidence:
        last_peer = max((e.seen_ms for e in peers.values()), default=None)
        seen = max(port.seen_ms, last_peer) if last_peer is not None else port.seen_ms
        committed = port.committed_ms if seen == port.seen_ms else None
        marks = [*port.marks, (f"{port.check}.seen", port.seen_ms, port.detail)]
        lines = []
        for name, e in peers.items():
            lines.append(f"peer {e.detail}, ready at {e.seen_ms - port.seen_ms:+.1f} ms vs "
                         f"{port.check}")  # fmt: skip
            marks.append((f"peer.ready {name}", e.seen_ms, e.detail))
        detail = (f"peers [{', '.join(peers)}] reach {self._dst.name}: "
                  f"{'; '.join(lines) or 'no peer chassis'} | {port.check}: {port.detail}")
        return Evidence(self.name, seen, detail, committed_ms=committed,
                        marks=tuple(sorted(marks, key=lambda m: m[1])))
