"""A peer chassis' flows for a remote port: which tunnels they output to.

On a peer the VM's port is remote, so the flows matching ``reg15=<port key>,metadata=<
datapath key>`` that carry traffic out end in ``output:<tunnel ofport>`` (one per chassis
of the port: with a multi-chassis binding the packet is cloned to the source AND the
destination tunnel). The table number (39 on OVN 23.03) is never looked at; the tunnel is
recognised by its Interface type and ``options:remote_ip`` in the peer's local
Open_vSwitch DB, not by its name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cutover.chassis.ofparse import Flow, match_number
from cutover.ovsdb.vswitch import interface_ofport

TUNNEL_TYPES = ("geneve", "vxlan", "stt")

_OUTPUT_RE = re.compile(r"(?:^|[,(])output:(\d+)(?=[,)]|$)")


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
