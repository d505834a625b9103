"""Pure parts of ``port-ready``: parsing and classifying ovs-ofctl output (samples captured
on this machine, OVS 3.1 / OVN 23.03.1) and the run-time version-path decision.

The ``race_*``/``claimed_*`` captures are the first-port-on-a-switch race, forced on the
lab (vm1 on hv1, hv2 hosting nothing on the switch; hv2's controller paused, requested-
chassis=hv1,hv2 + rarp written, the SB frozen, the controller resumed): ``race_*`` is hv2
with ``ovn-installed=true`` while the SB is frozen (38 flows on br-int), ``claimed_*`` the
same filters once the SB ran again (163 flows). vm1: ofport 3, port key 1, datapath key 1,
MAC 02:00:00:00:00:01. ``l2_two_datapaths`` (``dump-flows dl_dst=02:00:00:00:00:01``) and
``l2_table`` (the lookup table) are hv1 with a second switch holding a port with vm1's MAC
and port key on datapath 2."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest

from cutover.chassis.base import Vif
from cutover.chassis.flows import PortFlows, PortTarget, classify, parse_flow, parse_flows
from cutover.chassis.local import LocalChassis, rundir_for
from cutover.chassis.lookup import classify_lookup, lookup_match, reg15_written
from cutover.chassis.port_verdict import (
    PATH_FLOWS_ONLY,
    PATH_INSTALLED,
    WAIT_CLAIM,
    WAIT_LOOKUP,
    WAIT_RARP,
    complete,
    decide,
)
from cutover.errors import InvalidMigration
from cutover.ovsdb.sb import BindingState, SbClient
from cutover.site import ChassisEndpoint

DATA = Path(__file__).parent / "data"


def _sample(name: str) -> str:
    return (DATA / f"ofctl_{name}.txt").read_text()


# hv2 as additional chassis with activation-strategy=rarp, before the RARP
# (`ovs-ofctl dump-flows br-int`, with stats, OVS 3.1): vm1 is ofport 5, port key 1.
BLOCKED_IN_PORT = _sample("blocked_in_port")
BLOCKED_REG15 = _sample("blocked_reg15")
# hv1 as main chassis of vm1 (`--no-names --no-stats`, filtered): vm1 is ofport 3, key 1.
OPEN_IN_PORT = _sample("open_in_port")
OPEN_REG15 = _sample("open_reg15")
# hv2 getting its first port on the switch (see the module docstring)
RACE = tuple(parse_flows(_sample(f"race_{k}")) for k in ("in_port", "reg15", "l2"))
CLAIMED = tuple(parse_flows(_sample(f"claimed_{k}")) for k in ("in_port", "reg15", "l2"))
TWO_DATAPATHS = parse_flows(_sample("l2_two_datapaths"))
L2_TABLE = parse_flows(_sample("l2_table"))
VM1 = PortTarget(ofport=3, port_key=1, datapath_key=1, mac="02:00:00:00:00:01")
# the blocked/open captures come without their lookup: pair them with hv2's (same VM)
LOOKUP = CLAIMED[2]


def _target(ofport: int, port_key: int = 1) -> PortTarget:
    return PortTarget(ofport, port_key, 1, "02:00:00:00:00:01")


def test_parse_flow_with_and_without_stats() -> None:
    a = parse_flow(BLOCKED_REG15.splitlines()[5])
    b = parse_flow(OPEN_REG15.splitlines()[2])
    assert a is not None and b is not None
    assert (a.table, a.priority, a.match) == (65, 100, {"reg15": "0x1", "metadata": "0x1"})
    assert a.outputs_to(5) and not a.outputs_to(1)
    assert (b.table, b.priority, b.match) == (65, 100, {"reg15": "0x1", "metadata": "0x1"})
    rarp = parse_flow(BLOCKED_IN_PORT.splitlines()[0])
    assert rarp is not None and rarp.table == 0 and rarp.priority == 1010
    assert rarp.match == {"rarp": "", "in_port": "5"}
    assert parse_flow("NXST_FLOW reply (xid=0x4):") is None
    assert parse_flows(BLOCKED_REG15)[0].table == 39


def test_blocked_port_is_installed_and_awaits_activation() -> None:
    flows = classify(parse_flows(BLOCKED_IN_PORT), parse_flows(BLOCKED_REG15), LOOKUP,
                     _target(5))
    assert flows.installed and flows.blocked
    assert flows.ingress_blocked and flows.egress_blocked and flows.rarp_to_controller
    assert flows.egress_table == 65
    assert flows.state == "blocked-awaiting-activation"
    assert flows.n_in_port == 3  # ofport 3's flow is not counted
    assert flows.n_reg15 == 6  # reg15=0x3 is not counted


def test_open_port() -> None:
    flows = classify(parse_flows(OPEN_IN_PORT), parse_flows(OPEN_REG15), LOOKUP, _target(3))
    assert flows.installed and not flows.blocked and flows.state == "open"
    assert not flows.rarp_to_controller


def test_partial_or_foreign_flows_are_not_installed() -> None:
    # output flow to the tunnel (output:1) only: the remote path, not this port's
    only_remote = parse_flows(BLOCKED_REG15.splitlines()[1])
    blocked_in = parse_flows(BLOCKED_IN_PORT)
    assert not classify(blocked_in, only_remote, LOOKUP, _target(5)).installed
    # egress present, ingress missing
    assert not classify([], parse_flows(BLOCKED_REG15), LOOKUP, _target(5)).installed
    # only the block drops: no classification flow yet
    drops = [f for f in blocked_in if f.is_drop]
    assert not classify(drops, parse_flows(BLOCKED_REG15), LOOKUP, _target(5)).installed
    # another ofport
    assert not classify(blocked_in, parse_flows(BLOCKED_REG15), LOOKUP, _target(7)).installed
    assert "not-installed" in str(classify([], [], [], _target(5)))


def test_first_port_race_physical_flows_without_the_logical_pipeline() -> None:
    """What hv2 had while it reported ovn-installed with the SB frozen: both physical
    flows (even unblocked: the rarp blocks need the committed claim), no L2 lookup."""
    flows = classify(RACE[0], RACE[1], RACE[2], VM1)
    assert flows.physical and flows.ingress and flows.egress and flows.egress_table == 65
    assert not flows.blocked and not flows.rarp_to_controller
    assert not flows.lookup.present and flows.lookup.table is None
    assert flows.lookup.n_flows == 6  # the egress port-security flows of the MAC only
    assert not flows.installed
    assert flows.state.startswith("physical-only")
    assert "l2-lookup=False (absent" in str(flows)


def test_first_port_after_the_sb_ran_again() -> None:
    flows = classify(CLAIMED[0], CLAIMED[1], CLAIMED[2], VM1)
    assert flows.installed and flows.blocked and flows.rarp_to_controller
    assert flows.lookup.present and flows.lookup.table == 33
    assert flows.state == "blocked-awaiting-activation"
    assert "l2-lookup=True (table 33: metadata=0x1,dl_dst=02:00:00:00:00:01 -> reg15=0x1" in (
        str(flows))


def test_lookup_is_the_ports_own() -> None:
    # same MAC and port key on two datapaths: only the port's datapath counts
    assert classify_lookup(TWO_DATAPATHS, 1, "02:00:00:00:00:01", 1).present
    on_2 = classify_lookup(TWO_DATAPATHS, 2, "02:00:00:00:00:01", 1)
    assert on_2.present and on_2.table == 33 and on_2.n_flows == 1
    only_other_dp = [f for f in TWO_DATAPATHS if f.match.get("metadata") == "0x2"]
    assert not classify_lookup(only_other_dp, 1, "02:00:00:00:00:01", 1).present
    assert not classify_lookup(TWO_DATAPATHS, 3, "02:00:00:00:00:01", 1).present
    # the lookup table holds other MACs: the client's (key 2) is not vm1's
    assert classify_lookup(L2_TABLE, 1, "02:00:00:00:00:64", 2).present
    assert not classify_lookup(L2_TABLE, 1, "02:00:00:00:00:64", 1).present  # other port
    assert not classify_lookup(L2_TABLE, 1, "02:00:00:00:00:99", 1).present  # other MAC
    # the multicast flow (masked dl_dst) and the default flow never count
    assert not classify_lookup(L2_TABLE, 1, "01:00:00:00:00:00", 0x8000).present
    # MACs compare case-insensitively
    assert classify_lookup(L2_TABLE, 1, "02:00:00:00:00:01".upper(), 1).present


def test_reg15_writes_in_both_spellings() -> None:
    assert reg15_written("load:0x1->NXM_NX_REG15[],resubmit(,37)") == 1
    assert reg15_written("set_field:0x2a->reg15,resubmit(,40)") == 42
    assert reg15_written("load:0x1->NXM_NX_REG10[12]") is None
    assert reg15_written("load:0x1->NXM_NX_REG15[0..15]") is None  # a partial write
    assert reg15_written("move:NXM_NX_REG14[]->NXM_NX_REG15[]") is None
    assert lookup_match(1, "02:00:00:00:00:AB") == "metadata=1,dl_dst=02:00:00:00:00:ab"
    assert VM1.filters == ("table=0,in_port=3", "reg15=1", "metadata=1,dl_dst=02:00:00:00:00:01")


def _flows(installed: bool = True) -> PortFlows:
    if installed:
        return classify(CLAIMED[0], CLAIMED[1], CLAIMED[2], VM1)
    return classify([], [], [], VM1)


def test_decide_ovn_installed_path() -> None:
    d = decide(installed=True, claimed=True, flows=_flows(), complete_since_ms=1000.0,
               now=1000.0)
    assert d.ready and d.path == PATH_INSTALLED
    # ovn-installed alone is not enough: the flows must be on the bridge
    assert not decide(True, True, _flows(False), None, 1000.0).ready
    assert not decide(True, True, None, None, 1000.0).ready


def test_decide_early_ovn_installed_is_not_ready() -> None:
    """The first-port race: ovn-installed and the physical flows, but neither the claim
    nor the logical pipeline - on both paths, for as long as it lasts."""
    raced = classify(RACE[0], RACE[1], RACE[2], VM1)
    d = decide(True, False, raced, None, 1000.0)
    assert not d.ready and d.waiting_for == (WAIT_CLAIM, WAIT_LOOKUP)
    # the claim committed before the logical flows arrived: still not ready
    d = decide(True, True, raced, None, 1000.0)
    assert not d.ready and d.waiting_for == (WAIT_LOOKUP,)
    assert not decide(False, True, raced, None, 60_000.0).ready
    # all flows but no claim (a build setting ovn-installed before committing the claim)
    d = decide(True, False, _flows(), 1000.0, 60_000.0)
    assert not d.ready and d.waiting_for == (WAIT_CLAIM,)


def test_decide_flows_only_path_after_grace() -> None:
    d = decide(False, True, _flows(), complete_since_ms=1000.0, now=1100.0, grace_ms=300.0)
    assert not d.ready and d.recheck_at_ms == 1300.0
    d = decide(False, True, _flows(), complete_since_ms=1000.0, now=1300.0, grace_ms=300.0)
    assert d.ready and d.path == PATH_FLOWS_ONLY
    # never without the claim (flows of a previous binding)
    assert not decide(False, False, _flows(), 1000.0, 5000.0).ready


def test_rundir_is_where_the_db_socket_lives() -> None:
    ch = ChassisEndpoint(name="hv2", ovs_remote="unix:/tmp/cutover/x/hv2/db.sock")
    assert rundir_for(ch) == "/tmp/cutover/x/hv2"


def test_port_ready_needs_the_vifs_mac() -> None:
    """Without the MAC the port's L2 lookup cannot be checked: refused before arming."""
    ch = LocalChassis(ChassisEndpoint(name="hv2", ovs_remote="unix:/nonexistent/db.sock"),
                      sb=cast(SbClient, object()))  # never reached
    with pytest.raises(InvalidMigration, match="needs the VIF's MAC"):
        ch.watch_port(Vif("ls-vm1", "tap-vm1", "", ""))


def test_half_installed_rarp_blocks_are_not_ready() -> None:
    """Seen on OVN 25.03 right after ``ovn-installed``: the egress drop is in place, the
    ingress drop and the RARP-to-controller flow are not yet."""
    plain_in = [f for f in parse_flows(BLOCKED_IN_PORT) if f.priority == 100]
    flows = classify(plain_in, parse_flows(BLOCKED_REG15), LOOKUP, _target(5))
    assert flows.physical and flows.egress_blocked
    assert not flows.ingress_blocked and not flows.rarp_to_controller
    assert flows.partially_blocked and not flows.installed
    assert flows.state == "partially-blocked" and "partially-blocked" in str(flows)
    d = decide(installed=True, claimed=True, flows=flows, complete_since_ms=None, now=0.0)
    assert not d.ready and WAIT_RARP in d.waiting_for


def test_open_flows_are_not_ready_while_the_port_awaits_its_rarp() -> None:
    """Seen on OVN 26.03: ``ovn-installed`` on the plain port flows, the rarp blocks added
    in a later iteration. While the SB says the port awaits activation here, only the
    blocked state is complete."""
    open_flows = classify(parse_flows(OPEN_IN_PORT), parse_flows(OPEN_REG15), LOOKUP,
                          _target(3))
    assert open_flows.installed and not open_flows.blocked
    assert complete(open_flows) and not complete(open_flows, awaits_rarp=True)
    d = decide(installed=True, claimed=True, flows=open_flows, complete_since_ms=0.0,
               now=1000.0, awaits_rarp=True)
    assert not d.ready and d.waiting_for == (WAIT_RARP,)
    assert decide(installed=True, claimed=True, flows=open_flows, complete_since_ms=0.0,
                  now=1.0).ready  # activation none, or already activated: open is right


def test_binding_awaits_activation() -> None:
    b = BindingState("p", "hv1", (), "hv1", ("hv2",), True, (), "rarp")
    assert b.awaits_activation("hv2")  # requested: northd wrote it before hv2 claimed
    assert not b.awaits_activation("hv1")  # the main chassis is never blocked
    assert not replace(b, activated=("hv2",)).awaits_activation("hv2")
    assert not replace(b, activation_strategy="").awaits_activation("hv2")
    assert replace(b, additional=("hv2",), requested_additional=()).awaits_activation("hv2")
