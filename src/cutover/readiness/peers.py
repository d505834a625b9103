"""Pure parts of ``path-ready``: which chassis can send to a port, and what their flows
for it do.

Peer set (:func:`peer_chassis`): start at the datapath of the VM's port; follow SB
``Port_Binding`` rows of type ``patch`` (switch <-> router) and ``l3gateway`` (gateway
routers) through ``options:peer`` to the datapath on the other side, transitively, so a
switch behind a logical router is reached too. Every chassis that binds a port on one of
those datapaths (``chassis`` or ``additional_chassis``; this covers VIFs, and the
gateway chassis of ``chassisredirect``/``l3gateway``/``external`` ports) can send to the
VM and is a peer - except the migration's source and destination. A chassis with no port
there installs no flows for these datapaths and does not count.

Peer flows (:func:`classify_peer`): on a peer, the VM's port is remote, so the flows
matching ``reg15=<port key>,metadata=<datapath key>`` that carry traffic out end in
``output:<tunnel ofport>`` (one per chassis of the port: with a multi-chassis binding the
packet is cloned to the source AND the destination tunnel). The table number (39 on OVN
23.03) is never looked at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cutover.ovsdb.vswitch import interface_ofport
from cutover.readiness.flows import Flow, match_number

FOLLOWED_TYPES = ("patch", "l3gateway")
"""Port_Binding types whose ``options:peer`` joins two datapaths."""
TUNNEL_TYPES = ("geneve", "vxlan", "stt")

_OUTPUT_RE = re.compile(r"(?:^|[,(])output:(\d+)(?=[,)]|$)")


@dataclass(frozen=True)
class BindingRow:
    """A Port_Binding reduced to what the peer computation needs."""

    logical_port: str
    type: str
    datapath: str
    """Any stable id of the datapath (the row uuid for live rows)."""
    chassis: tuple[str, ...]
    """Names of ``chassis`` and ``additional_chassis``."""
    peer: str | None = None
    """``options:peer`` (patch / l3gateway)."""


def binding_rows(rows: Iterable[Any]) -> list[BindingRow]:
    """Reduce live SB Port_Binding rows (reference columns resolve to rows)."""
    out = []
    for r in rows:
        names = [str(c.name) for c in list(r.chassis or []) + list(r.additional_chassis or [])]
        out.append(BindingRow(
            logical_port=str(r.logical_port), type=str(r.type), datapath=str(r.datapath.uuid),
            chassis=tuple(sorted(set(names))), peer=r.options.get("peer"),
        ))
    return out


def reachable_datapaths(rows: Sequence[BindingRow], start: str) -> set[str]:
    """Datapaths joined to ``start`` through patch/l3gateway peers (``start`` included)."""
    by_name = {r.logical_port: r for r in rows}
    seen = {start}
    todo = [start]
    while todo:
        dp = todo.pop()
        for r in rows:
            if r.datapath != dp or r.type not in FOLLOWED_TYPES or not r.peer:
                continue
            other = by_name.get(r.peer)
            if other is not None and other.datapath not in seen:
                seen.add(other.datapath)
                todo.append(other.datapath)
    return seen


def peer_chassis(rows: Sequence[BindingRow], lsp: str, src: str,
                 dst: str) -> dict[str, tuple[str, ...]]:
    """``chassis -> the ports that make it a peer`` for the VM port ``lsp`` (empty if the
    port has no binding)."""
    me = next((r for r in rows if r.logical_port == lsp), None)
    if me is None:
        return {}
    dps = reachable_datapaths(rows, me.datapath)
    found: dict[str, list[str]] = {}
    for r in rows:
        if r.logical_port == lsp or r.datapath not in dps:
            continue
        for ch in r.chassis:
            if ch not in (src, dst):
                found.setdefault(ch, []).append(r.logical_port)
    return {ch: tuple(sorted(ports)) for ch, ports in sorted(found.items())}


def output_ports(actions: str) -> list[int]:
    """Every ``output:N`` in an action list (also inside ``clone(...)``)."""
    return [int(m) for m in _OUTPUT_RE.findall(actions)]


@dataclass(frozen=True)
class PeerPath:
    """What one peer's flows for the VM's port do."""

    chassis: str
    n_flows: int
    """Flows matching exactly this port key and datapath key."""
    outputs: tuple[tuple[int, str | None], ...]
    """``(ofport, tunnel remote_ip or None if not a tunnel)`` output by those flows."""
    dst_ips: tuple[str, ...]

    @property
    def tunnels(self) -> tuple[str, ...]:
        return tuple(ip for _, ip in self.outputs if ip is not None)

    @property
    def ready(self) -> bool:
        return any(ip in self.dst_ips for ip in self.tunnels)

    def __str__(self) -> str:
        if self.n_flows == 0:
            return f"{self.chassis}: no flow"
        outs = ", ".join(f"ofport {p} -> {ip or 'not a tunnel'}" for p, ip in self.outputs)
        verdict = "reaches" if self.ready else "does not reach"
        return (f"{self.chassis}: {self.n_flows} flows, outputs [{outs or 'none'}] "
                f"({verdict} {'/'.join(self.dst_ips)})")


def classify_peer(chassis: str, flows: Sequence[Flow], port_key: int, dp_key: int,
                  tunnels: Mapping[int, str], dst_ips: Sequence[str]) -> PeerPath:
    """Judge a peer from its ``reg15=<port_key>,metadata=<dp_key>`` flows; ``tunnels`` maps
    the peer's tunnel ofports to their ``options:remote_ip``."""
    mine = [f for f in flows if match_number(f.match.get("reg15")) == port_key
            and match_number(f.match.get("metadata")) == dp_key]
    outs: dict[int, str | None] = {}
    for f in mine:
        if f.is_drop:
            continue
        for port in output_ports(f.actions):
            outs.setdefault(port, tunnels.get(port))
    return PeerPath(chassis, len(mine), tuple(sorted(outs.items())), tuple(dst_ips))


def tunnel_ofports(interfaces: Iterable[Any], bridge_ports: Iterable[str]) -> dict[int, str]:
    """``ofport -> remote_ip`` of the tunnel Interfaces on the integration bridge."""
    on_bridge = set(bridge_ports)
    out: dict[int, str] = {}
    for r in interfaces:
        if r.type not in TUNNEL_TYPES or r.name not in on_bridge:
            continue
        ip = r.options.get("remote_ip")
        ofport = interface_ofport(r)
        if ip and ofport is not None:
            out[ofport] = str(ip)
    return out
