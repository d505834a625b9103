"""Control-plane load that makes ovn-controller slow, the way a busy cloud does.

Levels (lab-findings.md has the flow counts and timings they gave on this machine kind):

- ``L0``: nothing extra.
- ``L1``: 2000 extra LSPs (20 switches x 100) bound on one chassis through OVS ``dummy``
  interfaces (needs ``ovs-vswitchd --enable-dummy``): ~18k flows there.
- ``L2``: L1 + two port groups over every port and 5 security-group-like ACLs, one of them
  a remote-group ACL (address set of the group): ~130k flows; a port claim then takes
  seconds instead of ms.
- ``L3``: L2 + 20 remote-group TCP ACLs: ~2M flows, minutes per recompute (bench only).

Each level is added in ONE NB transaction (one northd/controller recompute instead of one
per row), and the lab waits (``--wait=hv``) until every chassis has caught up, so that a
migration measured afterwards sees a loaded, settled controller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cutover.errors import InputError
from cutover.lab import central
from cutover.lab.chassis import INTEGRATION_BRIDGE, vsctl
from cutover.lab.topology import LabTopology

LOAD_LEVELS = ("L0", "L1", "L2", "L3")
SWITCHES = 20
PORTS_PER_SWITCH = 100
L3_EXTRA_ACLS = 20
SG = "pg_sg"
DROP = "pg_drop"
_WAIT_S = 900.0


@dataclass(frozen=True)
class LoadReport:
    level: str
    chassis: str
    lsps: int
    seconds: float


def parse_load(level: str) -> str:
    norm = level.strip().upper()
    if norm not in LOAD_LEVELS:
        raise InputError(f"load {level!r}: choose one of {', '.join(LOAD_LEVELS)}")
    return norm


def _rank(level: str) -> int:
    return LOAD_LEVELS.index(level)


def _load_port(topo: LabTopology, s: int, p: int) -> tuple[str, str, str]:
    """(LSP name, "MAC IP" address, OVS interface name <= 15 chars) of a load port."""
    return (
        f"{topo.prefix}-ld{s}-{p}",
        f"02:10:00:00:{s:02x}:{p:02x} 10.100.{s}.{p + 10}",
        f"{topo.short}d{s}-{p}",
    )


def apply_load(
    topo: LabTopology,
    current: str,
    level: str,
    chassis: str,
    progress: Callable[[str], None] = lambda _m: None,
) -> LoadReport:
    """Raise the lab's load from ``current`` to ``level`` (load is only ever added)."""
    level, current = parse_load(level), parse_load(current)
    if _rank(level) < _rank(current):
        raise InputError(
            f"the lab already carries load {current}; to measure {level}, "
            "run 'cutover lab down' and let the bench build a fresh lab"
        )
    t0 = time.monotonic()
    ch = topo.chassis_named(chassis)
    if _rank(current) < 1 <= _rank(level):
        progress(f"load L1: {SWITCHES * PORTS_PER_SWITCH} LSPs in one NB transaction")
        args: list[str] = []
        for s in range(SWITCHES):
            args += ["--", "ls-add", f"{topo.prefix}-lds{s}"]
            for p in range(PORTS_PER_SWITCH):
                lsp, addr, _ = _load_port(topo, s, p)
                args += ["--", "lsp-add", f"{topo.prefix}-lds{s}", lsp,
                         "--", "lsp-set-addresses", lsp, addr]
        central.nbctl(topo, *args, timeout=_WAIT_S)
        progress(f"load L1: {SWITCHES * PORTS_PER_SWITCH} dummy interfaces on {chassis}")
        vs: list[str] = []
        for s in range(SWITCHES):
            for p in range(PORTS_PER_SWITCH):
                lsp, _, iface = _load_port(topo, s, p)
                vs += ["--", "add-port", INTEGRATION_BRIDGE, iface,
                       "--", "set", "Interface", iface, "type=dummy",
                       f"external_ids:iface-id={lsp}"]
        vsctl(ch, *vs, timeout=_WAIT_S)
        _wait_hv(topo, progress)
    if _rank(current) < 2 <= _rank(level):
        progress("load L2: port groups over every port + 5 security-group ACLs")
        central.nbctl(topo, *_acl_args(topo, extra=0, groups=True), timeout=_WAIT_S)
        _wait_hv(topo, progress)
    if _rank(current) < 3 <= _rank(level):
        progress(f"load L3: {L3_EXTRA_ACLS} remote-group TCP ACLs")
        central.nbctl(topo, *_acl_args(topo, extra=L3_EXTRA_ACLS, groups=False),
                      timeout=_WAIT_S)
        _wait_hv(topo, progress)
    lsps = SWITCHES * PORTS_PER_SWITCH if _rank(level) >= 1 else 0
    return LoadReport(level, chassis, lsps, round(time.monotonic() - t0, 3))


def _acl_args(topo: LabTopology, extra: int, groups: bool) -> list[str]:
    """Neutron-like security groups: a drop group and an allow group whose remote-group
    address set (``$pg_sg_ip4``) lists every member's IP."""
    args: list[str] = []
    if groups:
        lsps = [p.lsp for p in topo.ports] + [
            _load_port(topo, s, p)[0] for s in range(SWITCHES) for p in range(PORTS_PER_SWITCH)
        ]
        args += ["--", "pg-add", SG, *lsps, "--", "pg-add", DROP, *lsps]
        rules = [
            (DROP, "from-lport", "1001", f"inport == @{DROP} && ip", "drop"),
            (DROP, "to-lport", "1001", f"outport == @{DROP} && ip", "drop"),
            (SG, "from-lport", "1002", f"inport == @{SG} && ip4", "allow-related"),
            (SG, "to-lport", "1002",
             f"outport == @{SG} && ip4 && ip4.src == ${SG}_ip4", "allow-related"),
            (SG, "to-lport", "1002", f"outport == @{SG} && icmp4", "allow-related"),
        ]
    else:
        rules = []
    for i in range(1, extra + 1):
        rules.append((SG, "to-lport", "1002",
                      f"outport == @{SG} && ip4 && ip4.src == ${SG}_ip4 && tcp.dst == {1000 + i}",
                      "allow-related"))
    for pg, direction, prio, match, action in rules:
        args += ["--", "--type=port-group", "acl-add", pg, direction, prio, match, action]
    return args


def _wait_hv(topo: LabTopology, progress: Callable[[str], None]) -> None:
    progress("waiting until every chassis has installed the load (--wait=hv)")
    central.nbctl(topo, "--wait=hv", "sync", timeout=_WAIT_S)
