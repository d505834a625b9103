"""Pure tests of the lab's data: names, addresses, validation, stall specs (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cutover.errors import InputError
from cutover.lab.stall import parse_stall
from cutover.lab.topology import IFNAMSIZ, UNIX_PATH_MAX, LabTopology


def test_defaults_match_the_documented_lab() -> None:
    t = LabTopology()
    assert t.prefix == "cutover"
    assert t.dir == Path("/tmp/cutover/cutover")
    assert t.lab_dir == Path("/tmp/cutover/cutover")
    assert [c.name for c in t.chassis] == ["hv1", "hv2", "hv3"]
    assert [c.netns for c in t.chassis] == ["cutover-hv1", "cutover-hv2", "cutover-hv3"]
    assert [c.encap_ip for c in t.chassis] == ["172.31.250.11", "172.31.250.12", "172.31.250.13"]
    assert t.underlay_netns == "cutover-ul"
    assert t.switch == "cutover-ls"
    assert t.nb_sock == Path("/tmp/cutover/cutover/central/ovnnb_db.sock")
    assert t.sb_sock == Path("/tmp/cutover/cutover/central/ovnsb_db.sock")
    assert t.chassis[0].db_sock == Path("/tmp/cutover/cutover/hv1/db.sock")
    assert t.chassis[1].controller_ctl == Path("/tmp/cutover/cutover/hv2/ovn-controller.ctl")
    assert t.guest_dir == Path("/tmp/cutover/cutover/guests")


def test_vms_and_client() -> None:
    t = LabTopology()
    vm1, vm2 = t.vms
    assert (vm1.name, vm1.chassis, vm1.ip, vm1.mac) == ("vm1", "hv1", "10.99.0.1",
                                                        "02:00:00:00:00:01")
    assert (vm2.name, vm2.chassis, vm2.ip, vm2.mac) == ("vm2", "hv2", "10.99.0.2",
                                                        "02:00:00:00:00:02")
    assert vm1.tap == "cot-vm1"
    assert vm1.lsp == "cutover-vm1"
    c = t.client
    assert (c.name, c.chassis, c.ip, c.tap) == ("client", "hv3", "10.99.0.100", "cot-client")
    assert t.ports == (vm1, vm2, c)
    assert len({p.vm_uuid for p in t.ports}) == 3
    # stable across instances: the same lab always records the same vm-uuid
    assert LabTopology().vms[0].vm_uuid == vm1.vm_uuid


def test_more_chassis_spread_vms_over_all_but_the_last() -> None:
    t = LabTopology(prefix="big", n_chassis=4, n_vms=5)
    assert [v.chassis for v in t.vms] == ["hv1", "hv2", "hv3", "hv1", "hv2"]
    assert t.client.chassis == "hv4"
    assert t.chassis[3].encap_ip == "172.31.250.14"


def test_spare_chassis_host_no_port() -> None:
    assert LabTopology().spares == ()
    t = LabTopology(prefix="sp", n_chassis=3, spare_chassis=1)
    assert [v.chassis for v in t.vms] == ["hv1"]
    assert t.spares == ("hv2",) and t.client.chassis == "hv3"
    assert "hv2" not in {p.chassis for p in t.ports}
    t = LabTopology(prefix="sp", n_chassis=5, spare_chassis=2, n_vms=3)
    assert [v.chassis for v in t.vms] == ["hv1", "hv2", "hv1"]
    assert t.spares == ("hv3", "hv4") and t.client.chassis == "hv5"
    assert not set(t.spares) & {p.chassis for p in t.ports}


@pytest.mark.parametrize(("n_chassis", "spare"), [(3, 2), (2, 1), (3, -1)])
def test_spares_leave_a_vm_chassis_and_the_client(n_chassis: int, spare: int) -> None:
    with pytest.raises(InputError, match="spare_chassis"):
        LabTopology(n_chassis=n_chassis, spare_chassis=spare)


def test_all_interface_names_fit_ifnamsiz() -> None:
    # longest allowed prefix and tag, most chassis and VMs
    t = LabTopology(prefix="abcdefghij", tag="abcd", n_chassis=99, n_vms=99, client_host=200,
                    vm_subnet="10.99.0.0/16")
    names = [t.underlay_bridge, *(c.veth for c in t.chassis), *(c.ul_veth for c in t.chassis),
             *(p.tap for p in t.ports)]
    assert max(len(n) for n in names) <= IFNAMSIZ


def test_every_name_carries_the_prefix() -> None:
    t = LabTopology(prefix="cotl")
    assert all(c.netns.startswith("cotl-") for c in t.chassis)
    assert all(p.lsp.startswith("cotl-") for p in t.ports)
    assert all(p.tap.startswith("ctt-") for p in t.ports)  # tag "ct": first + middle char
    assert t.underlay_bridge.startswith("cotl-")
    assert t.marker == "/tmp/cutover/cotl/"


@pytest.mark.parametrize("prefix", ["", "Cutover", "1lab", "cut-over", "cut_over", "a" * 11])
def test_bad_prefix_is_rejected(prefix: str) -> None:
    with pytest.raises(InputError, match="prefix"):
        LabTopology(prefix=prefix)


def test_bad_tag_is_rejected() -> None:
    with pytest.raises(InputError, match="tag"):
        LabTopology(tag="toolong")


@pytest.mark.parametrize("n", [0, 1, 100])
def test_bad_chassis_count(n: int) -> None:
    with pytest.raises(InputError, match="n_chassis"):
        LabTopology(n_chassis=n)


def test_relative_lab_dir_is_rejected() -> None:
    with pytest.raises(InputError, match="absolute"):
        LabTopology(lab_dir=Path("relative/dir"))


def test_long_lab_dir_is_rejected_for_unix_sockets() -> None:
    long_dir = Path("/tmp") / ("x" * UNIX_PATH_MAX)
    with pytest.raises(InputError, match="socket path"):
        LabTopology(lab_dir=long_dir)


def test_bad_subnets() -> None:
    with pytest.raises(InputError, match="subnet"):
        LabTopology(underlay_subnet="not-a-net")
    with pytest.raises(InputError, match="too small"):
        LabTopology(underlay_subnet="172.31.250.0/29")
    with pytest.raises(InputError, match="client_host"):
        LabTopology(client_host=1)


def test_custom_tag_and_lab_dir(tmp_path: Path) -> None:
    t = LabTopology(prefix="cotl", tag="zz", lab_dir=tmp_path / "lab")
    assert t.vms[0].tap == "zzt-vm1"
    assert t.chassis[0].dir == tmp_path / "lab" / "hv1"
    assert t.site_path == tmp_path / "lab" / "site.json"


# -- stall specs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("dst:2000", ("dst", 2000.0)),
        ("peer:150.5", ("peer", 150.5)),
        (" DST:10 ", ("dst", 10.0)),
        ("none", ("none", 0.0)),
        ("none:0", ("none", 0.0)),
    ],
)
def test_parse_stall_ok(spec: str, want: tuple[str, float]) -> None:
    assert parse_stall(spec) == want


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("src:100", "role must be one of"),
        ("dst", "give a duration"),
        ("dst:", "give a duration"),
        ("dst:abc", "not a number"),
        ("dst:0", "must be > 0"),
        ("dst:-5", "must be > 0"),
        ("peer:9999999", "<= 600000"),
        ("none:100", "takes no duration"),
        ("", "role must be one of"),
    ],
)
def test_parse_stall_errors(spec: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_stall(spec)
