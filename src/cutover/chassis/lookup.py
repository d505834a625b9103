"""The port's own *logical* pipeline on a chassis: the L2 lookup flow for the VM's MAC.

Why the physical flows are not enough: released OVN builds (23.03 here, up to 26.03.x;
fixed on OVN main in 2026, commit dd46a88d8) can set ``ovn-installed`` on the Interface of
a chassis that gets its FIRST port on a logical switch before that switch's logical flows
have reached it. With conditional monitoring (``ovn-monitor-all=false``, the default) the
chassis asks the SB for a datapath's ``Logical_Flow`` rows only once it binds a port
there; it installs the port's physical flows (table 0 ``in_port``, the output table's
``reg15 -> output``) from the ``Port_Binding`` alone, the ofctrl barrier confirms them and
``ovn-installed`` follows - while the reply carrying the logical flows may still be on its
way. Traffic for the VM then enters the destination's pipeline and finds no switch.
Reproduced on this lab (OVN 23.03.1) by freezing the SB right after the destination read
the ``requested-chassis`` change: ``ovn-installed=true`` 9 ms later with both physical
flows on br-int and none of the switch's logical flows (38 flows on the bridge instead of
163), for as long as the SB stayed frozen.

So port-ready also requires the flow ovn-controller compiles from the switch's
``ls_in_l2_lkup`` stage for this port: ``metadata=<datapath key>,dl_dst=<VM MAC>`` ->
``reg15 = <port key>``. It is found by its match and actions - never by table number
(23.03 puts it in table 33; later releases number their stages differently) - and it is
specific to the port: another MAC, another datapath, or the same MAC delivered to another
port key does not count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cutover.chassis.ofparse import Flow, match_number

_REG15_WRITE = re.compile(
    r"(?:^|,)(?:load:(0x[0-9a-fA-F]+|\d+)->NXM_NX_REG15\[\]"
    r"|set_field:(0x[0-9a-fA-F]+|\d+)->reg15)(?=,|$)"
)
"""A write of a whole value into reg15 (the logical outport), as ``ovs-ofctl`` prints it:
``load:...->NXM_NX_REG15[]`` (OVS 3.1) or ``set_field:...->reg15``."""


def reg15_written(actions: str) -> int | None:
    """The value the actions put into reg15 first (None: they do not set it)."""
    m = _REG15_WRITE.search(actions)
    if m is None:
        return None
    return int(m.group(1) or m.group(2), 0)


def normal_mac(mac: str) -> str:
    """``ovs-ofctl`` prints MACs in lower case with colons."""
    return mac.strip().lower()


def lookup_match(datapath_key: int, mac: str) -> str:
    """The ``dump-flows`` filter / ``monitor`` watch spec for the port's L2 lookup: every
    flow whose match includes this datapath and this destination MAC (the lookup and the
    egress port-security flows of the port)."""
    return f"metadata={datapath_key},dl_dst={normal_mac(mac)}"


@dataclass(frozen=True)
class L2Lookup:
    """Whether the port's L2 lookup flow is on the bridge."""

    datapath_key: int
    mac: str
    port_key: int
    present: bool
    table: int | None
    """The table the lookup flow was found in (23.03: 33)."""
    n_flows: int
    """Flows on this datapath matching this destination MAC (lookup + egress checks)."""

    def __str__(self) -> str:
        where = f"table {self.table}" if self.table is not None else "absent"
        return (f"l2-lookup={self.present} ({where}: metadata={self.datapath_key:#x},"
                f"dl_dst={self.mac} -> reg15={self.port_key:#x}; {self.n_flows} flows for "
                "that MAC on the datapath)")  # fmt: skip


def classify_lookup(flows: Sequence[Flow], datapath_key: int, mac: str,
                    port_key: int) -> L2Lookup:
    """Judge the port's L2 lookup from a dump filtered by :func:`lookup_match`; flows of
    other datapaths or MACs that slipped in are ignored."""
    want = normal_mac(mac)
    mine = [f for f in flows if match_number(f.match.get("metadata")) == datapath_key
            and f.match.get("dl_dst", "").lower() == want]  # fmt: skip
    lookups = [f for f in mine
               if "reg15" not in f.match and not f.is_drop
               and reg15_written(f.actions) == port_key]  # fmt: skip
    return L2Lookup(
        datapath_key=datapath_key, mac=want, port_key=port_key, present=bool(lookups),
        table=min(f.table for f in lookups) if lookups else None, n_flows=len(mine),
    )
