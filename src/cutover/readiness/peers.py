"""Pure part of ``path-ready`` on the central side: which chassis can send to a port.

Peer set (:func:`peer_chassis`): start at the datapath of the VM's port; follow SB
``Port_Binding`` rows of type ``patch`` (switch <-> router) and ``l3gateway`` (gateway
routers) through ``options:peer`` to the datapath on the other side, transitively, so a
switch behind a logical router is reached too. Every chassis that binds a port on one of
those datapaths (``chassis`` or ``additional_chassis``; this covers VIFs, and the
gateway chassis of ``chassisredirect``/``l3gateway``/``external`` ports) can send to the
VM and is a peer - except the migration's source and destination. A chassis with no port
there installs no flows for these datapaths and does not count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

FOLLOWED_TYPES = ("patch", "l3gateway")
"""Port_Binding types whose ``options:peer`` joins two datapaths."""


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
