"""Pure parts of ``port-ready``: parsing and classifying ovs-ofctl output (samples captured
on this machine, OVS 3.1 / OVN 23.03.1) and the run-time version-path decision."""

from __future__ import annotations

from pathlib import Path

from cutover.chassis.flows import PortFlows, classify, parse_flow, parse_flows
from cutover.chassis.local import rundir_for
from cutover.chassis.port_watch import PATH_FLOWS_ONLY, PATH_INSTALLED, decide
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
    flows = classify(parse_flows(BLOCKED_IN_PORT), parse_flows(BLOCKED_REG15), 5, 1)
    assert flows.installed and flows.blocked
    assert flows.ingress_blocked and flows.egress_blocked and flows.rarp_to_controller
    assert flows.egress_table == 65
    assert flows.state == "blocked-awaiting-activation"
    assert flows.n_in_port == 3  # ofport 3's flow is not counted
    assert flows.n_reg15 == 6  # reg15=0x3 is not counted


def test_open_port() -> None:
    flows = classify(parse_flows(OPEN_IN_PORT), parse_flows(OPEN_REG15), 3, 1)
    assert flows.installed and not flows.blocked and flows.state == "open"
    assert not flows.rarp_to_controller


def test_partial_or_foreign_flows_are_not_installed() -> None:
    # output flow to the tunnel (output:1) only: the remote path, not this port's
    only_remote = parse_flows(BLOCKED_REG15.splitlines()[1])
    assert not classify(parse_flows(BLOCKED_IN_PORT), only_remote, 5, 1).installed
    # egress present, ingress missing
    assert not classify([], parse_flows(BLOCKED_REG15), 5, 1).installed
    # only the block drops: no classification flow yet
    drops = [f for f in parse_flows(BLOCKED_IN_PORT) if f.is_drop]
    assert not classify(drops, parse_flows(BLOCKED_REG15), 5, 1).installed
    # another ofport
    assert not classify(parse_flows(BLOCKED_IN_PORT), parse_flows(BLOCKED_REG15), 7, 1).installed
    assert "not-installed" in str(classify([], [], 5, 1))


def _flows(installed: bool = True) -> PortFlows:
    if installed:
        return classify(parse_flows(BLOCKED_IN_PORT), parse_flows(BLOCKED_REG15), 5, 1)
    return classify([], [], 5, 1)


def test_decide_ovn_installed_path() -> None:
    d = decide(installed=True, claimed=True, flows=_flows(), complete_since_ms=1000.0,
               now=1000.0)
    assert d.ready and d.path == PATH_INSTALLED
    # ovn-installed alone is not enough: the flows must be on the bridge
    assert not decide(True, True, _flows(False), None, 1000.0).ready
    assert not decide(True, True, None, None, 1000.0).ready


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
