"""Pure parts of ``path-ready``: the peer chassis set from SB rows (fakes) and the
classification of a peer's flows for the VM's port (samples captured on this machine,
OVS 3.1 / OVN 23.03.1, on hv3 = the client's chassis; vm1 is port key 1 on datapath 1;
hv3's tunnel ofport 1 goes to hv1 172.31.250.11, ofport 2 to hv2 172.31.250.12)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from cutover.chassis.flows import parse_flows
from cutover.chassis.tunnels import classify_peer, output_ports, tunnel_ofports
from cutover.readiness.peers import BindingRow, binding_rows, peer_chassis, reachable_datapaths

DATA = Path(__file__).parent / "data"
TUNNELS = {1: "172.31.250.11", 2: "172.31.250.12"}
HV2 = ("172.31.250.12",)


def _flows(name: str) -> str:
    return (DATA / f"ofctl_peer_{name}.txt").read_text()


def _vif(lsp: str, dp: str, *chassis: str) -> BindingRow:
    return BindingRow(lsp, "", dp, tuple(chassis))


def test_same_switch_peers_exclude_src_dst_and_the_vm() -> None:
    rows = [
        _vif("vm1", "ls1", "hv1"),
        _vif("vm2", "ls1", "hv2"),
        _vif("client", "ls1", "hv3"),
        _vif("client2", "ls1", "hv3"),
        _vif("other-net", "ls9", "hv4"),
        BindingRow("ln", "localnet", "ls1", ()),
    ]
    assert peer_chassis(rows, "vm1", "hv1", "hv2") == {"hv3": ("client", "client2")}
    assert peer_chassis(rows, "missing", "hv1", "hv2") == {}


def test_router_hop_and_gateway_chassis() -> None:
    rows = [
        _vif("vm1", "ls1", "hv1"),
        BindingRow("ls1-lr", "patch", "ls1", (), peer="lr-ls1"),
        BindingRow("lr-ls1", "patch", "lr", (), peer="ls1-lr"),
        BindingRow("lr-ls2", "patch", "lr", (), peer="ls2-lr"),
        BindingRow("ls2-lr", "patch", "ls2", (), peer="lr-ls2"),
        BindingRow("cr-lr-pub", "chassisredirect", "lr", ("gw1",)),
        _vif("web", "ls2", "hv5"),
        _vif("db", "ls2", "hv2"),  # on the destination: not a peer
        BindingRow("ls3-lr9", "patch", "ls3", (), peer="lr9-ls3"),  # not connected
        _vif("far", "ls3", "hv6"),
    ]
    assert reachable_datapaths(rows, "ls1") == {"ls1", "lr", "ls2"}
    assert peer_chassis(rows, "vm1", "hv1", "hv2") == {"gw1": ("cr-lr-pub",),
                                                       "hv5": ("web",)}


def test_gateway_router_through_l3gateway_and_additional_chassis() -> None:
    rows = [
        _vif("vm1", "ls1", "hv1"),
        BindingRow("ls1-gr", "l3gateway", "ls1", ("gw2",), peer="gr-ls1"),
        BindingRow("gr-ls1", "l3gateway", "gr", ("gw2",), peer="ls1-gr"),
        BindingRow("gr-ext", "l3gateway", "gr", ("gw2",), peer="ext-gr"),
        BindingRow("ext-gr", "l3gateway", "ext", ("gw2",), peer="gr-ext"),
        _vif("moving", "ext", "hv7", "hv8"),  # main + additional chassis
    ]
    assert peer_chassis(rows, "vm1", "hv1", "hv2") == {
        "gw2": ("ext-gr", "gr-ext", "gr-ls1", "ls1-gr"), "hv7": ("moving",), "hv8": ("moving",),
    }


def test_binding_rows_reduces_live_rows() -> None:
    ch = SimpleNamespace(name="hv3")
    dp = SimpleNamespace(uuid="u-1", tunnel_key=1)
    row = SimpleNamespace(logical_port="client", type="", datapath=dp, chassis=[ch],
                          additional_chassis=[], options={"requested-chassis": "hv3"})
    patch = SimpleNamespace(logical_port="p", type="patch", datapath=dp, chassis=[],
                            additional_chassis=[], options={"peer": "q"})
    assert binding_rows([row, patch]) == [BindingRow("client", "", "u-1", ("hv3",)),
                                          BindingRow("p", "patch", "u-1", (), "q")]


def test_output_ports_sees_every_output_also_in_clone() -> None:
    assert output_ports("load:0x1->NXM_NX_TUN_ID[0..23],output:1,output:2,resubmit(,40)") \
        == [1, 2]
    assert output_ports("clone(set_field:0x1->tun_metadata0,output:7),output:12") == [7, 12]
    assert output_ports("resubmit(,40)") == []
    assert output_ports("output:NXM_NX_REG15[]") == []


def test_peer_before_the_claim_tunnels_only_to_the_source() -> None:
    path = classify_peer("hv3", parse_flows(_flows("to_src")), 1, 1, TUNNELS, HV2)
    assert path.n_flows == 1 and path.tunnels == ("172.31.250.11",)
    assert not path.ready
    assert "does not reach 172.31.250.12" in str(path)


def test_multichassis_peer_clones_to_both_tunnels() -> None:
    flows = parse_flows(_flows("multichassis"))
    assert flows[0].table == 39  # on 23.03.1; never used by the classification
    path = classify_peer("hv3", flows, 1, 1, TUNNELS, HV2)
    assert path.tunnels == ("172.31.250.11", "172.31.250.12")
    assert path.ready


def test_after_the_move_with_stats_and_other_ports_ignored() -> None:
    flows = parse_flows(_flows("to_dst_stats"))
    assert len(flows) == 1
    path = classify_peer("hv3", flows, 1, 1, TUNNELS, HV2)
    assert path.ready and path.outputs == ((2, "172.31.250.12"),)
    assert classify_peer("hv3", flows, 2, 1, TUNNELS, HV2).n_flows == 0
    assert not classify_peer("hv3", flows, 1, 5, TUNNELS, HV2).ready


def test_no_flow_and_unknown_tunnel() -> None:
    empty = classify_peer("hv3", [], 1, 1, TUNNELS, HV2)
    assert str(empty) == "hv3: no flow" and not empty.ready
    late = classify_peer("hv3", parse_flows(_flows("multichassis")), 1, 1,
                         {1: "172.31.250.11"}, HV2)  # hv2's tunnel port not in OVSDB yet
    assert not late.ready and "ofport 2 -> not a tunnel" in str(late)


def test_tunnel_ofports_only_tunnels_on_the_bridge() -> None:
    def iface(name: str, type_: str, ofport: object, **options: str) -> SimpleNamespace:
        return SimpleNamespace(name=name, type=type_, ofport=ofport, options=options)

    rows = [
        iface("ovn-hv1-0", "geneve", [1], remote_ip="172.31.250.11"),
        iface("ovn-hv2-0", "geneve", 2, remote_ip="172.31.250.12"),
        iface("ovn-hv4-0", "geneve", [], remote_ip="172.31.250.14"),  # no ofport yet
        iface("cpt-client", "", [3]),
        iface("elsewhere", "vxlan", [1], remote_ip="10.0.0.1"),  # not on br-int
    ]
    ports = ["ovn-hv1-0", "ovn-hv2-0", "ovn-hv4-0", "cpt-client", "br-int"]
    assert tunnel_ofports(rows, ports) == TUNNELS
