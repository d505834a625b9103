"""Bench conditions and load levels: parsing, normalization and the matrix."""

from __future__ import annotations

import argparse

import pytest

from cutover.bench.runner import MATRIX, Condition
from cutover.commands import _conditions
from cutover.errors import InputError
from cutover.lab.load import _acl_args, parse_load
from cutover.lab.topology import LabTopology


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"activations": None, "matrix": False, "stalls": None,
                               "loads": None}
    base.update(kw)
    return argparse.Namespace(**base)


def test_condition_normalizes_and_rejects() -> None:
    assert Condition(load="l2", stall="DST:2000").checked() == Condition("L2", "dst:2000")
    with pytest.raises(InputError, match="load"):
        Condition(load="L9").checked()
    with pytest.raises(InputError, match="stall"):
        Condition(stall="src:10").checked()
    with pytest.raises(InputError, match="activation"):
        Condition(activation="garp").checked()


def test_conditions_are_the_product_of_the_options() -> None:
    got = _conditions(_args(stalls=["none", "dst:2000"], loads=["L0", "L2"],
                            activations=["rarp", "none"]))
    assert len(got) == 8
    assert Condition("L2", "dst:2000", "none") in got


def test_matrix_covers_load_and_both_stalls() -> None:
    got = _conditions(_args(matrix=True))
    assert {(c.load, c.stall) for c in got} == {(c.load, c.stall) for c in MATRIX}
    assert ("L2", "none") in {(c.load, c.stall) for c in got}
    assert {"dst:2000", "peer:2000"} <= {c.stall for c in got}
    with pytest.raises(InputError, match="matrix"):
        _conditions(_args(matrix=True, loads=["L1"]))


def test_load_levels_and_acls() -> None:
    assert parse_load("l3") == "L3"
    with pytest.raises(InputError):
        parse_load("L4")
    topo = LabTopology(prefix="cou")
    l2 = _acl_args(topo, extra=0, groups=True)
    assert l2.count("acl-add") == 5
    assert any("$pg_sg_ip4" in a for a in l2)  # the remote-group ACL
    l3 = _acl_args(topo, extra=20, groups=False)
    assert l3.count("acl-add") == 20 and "pg-add" not in l3


def test_a_bench_refuses_a_vm_on_the_clients_chassis_before_it_runs() -> None:
    """A VM moved onto the client's chassis by hand made every run fail its precondition
    (exit 1, six failed runs); it is one InputError before anything runs."""
    from cutover.bench.runner import BenchPlan, direction
    from cutover.site import ChassisEndpoint, Site, VmSpec

    chassis = tuple(ChassisEndpoint(f"hv{i}", f"unix:/x{i}") for i in (1, 2, 3))
    client = VmSpec("client", "p-client", "02:00:00:00:00:09", "10.0.0.9", "hv3", "tcl")

    def site(where: str) -> Site:
        vm = VmSpec("vm1", "p-vm1", "02:00:00:00:00:01", "10.0.0.1", where, "tvm1")
        return Site(name="p", nb_remote="x", sb_remote="y", chassis=chassis, vms=(vm,),
                    clients=(client,))

    plan = BenchPlan(strategies=("claim",))
    assert direction(site("hv1"), plan) == ("hv1", "hv2")
    assert direction(site("hv2"), plan) == ("hv2", "hv1")
    with pytest.raises(InputError, match=r"vm1 runs on hv3, the chassis of the probe client "
                       r"client.*'cutover migrate vm1 --to hv1'"):
        direction(site("hv3"), plan)
