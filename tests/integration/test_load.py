"""Control-plane load on a real lab (small sizes: the real levels are for the bench)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from labkit import lab_prefix

from cutover.errors import InputError
from cutover.lab import Lab, LabTopology, load

pytestmark = [pytest.mark.integration]


@pytest.fixture
def small_lab(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setattr(load, "SWITCHES", 2)
    monkeypatch.setattr(load, "PORTS_PER_SWITCH", 5)
    monkeypatch.setattr(load, "L3_EXTRA_ACLS", 2)
    lab = Lab(LabTopology(prefix=lab_prefix("cold")))
    lab.down()
    lab.up()
    yield lab
    assert lab.down() == []


def _nbctl(lab: Lab, *args: str) -> str:
    return subprocess.run(["ovn-nbctl", f"--db=unix:{lab.topo.nb_sock}", *args],
                          capture_output=True, text=True, check=True).stdout


def _installed_on(lab: Lab, chassis: str) -> list[str]:
    ch = lab.topo.chassis_named(chassis)
    out = subprocess.run(
        ["ovs-vsctl", f"--db=unix:{ch.db_sock}", "--bare", "--columns=name", "find",
         "Interface", "type=dummy", "external_ids:ovn-installed=true"],
        capture_output=True, text=True, check=True).stdout
    return out.split()


def test_load_levels_bind_ports_and_add_acls(small_lab: Lab) -> None:
    site = small_lab.apply_load("L1", "hv2")
    assert site.extra["load"] == "L1"
    assert len(_installed_on(small_lab, "hv2")) == 10
    assert _installed_on(small_lab, "hv1") == []
    assert "acl" not in _nbctl(small_lab, "list", "ACL")
    site = small_lab.apply_load("L3", "hv2")  # L2 and L3 in turn
    assert site.extra["load"] == "L3" and small_lab.site().extra["load"] == "L3"
    acls = _nbctl(small_lab, "--bare", "--columns=match", "list", "ACL").split("\n")
    assert sum(1 for a in acls if a.strip()) == 5 + 2
    assert sum(1 for a in acls if "$pg_sg_ip4" in a) == 1 + 2
    with pytest.raises(InputError, match="already carries load L3"):
        small_lab.apply_load("L2", "hv2")
