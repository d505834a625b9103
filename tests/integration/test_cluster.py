"""``lab up --clustered``: NB and SB as 3-member RAFT clusters, and the SB leader killed
in the middle of a migration (real ovsdb-server cluster, emulated guests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from labkit import lab_prefix, other_chassis, running_lab

from cutover.bench.faults import FaultPlan
from cutover.bench.leftovers import scan
from cutover.guest.emulated import EmulatedHypervisor
from cutover.lab import Lab, LabTopology, host
from cutover.lab.cluster import roles
from cutover.lab.faults import LabFaults
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationOptions
from cutover.migration.orchestrator import migrate

pytestmark = [pytest.mark.integration]

PREFIX = lab_prefix("cofc")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(PREFIX, clustered=True)


def one_leader(members: dict[str, str]) -> bool:
    return (sorted(members.values()).count("leader") == 1
            and all(r in ("leader", "follower") for r in members.values()))


def test_the_cluster_is_up_and_every_client_has_the_member_list(lab: Lab) -> None:
    status = lab.status()
    assert status.state == "up" and set(status.clusters) == {"NB", "SB"}
    assert all(one_leader(dict(m)) for m in status.clusters.values())
    assert "SB cluster: leader sb" in status.describe()
    site = lab.site()
    assert site.sb_remote.count("unix:") == 3 and site.nb_remote.count("unix:") == 3
    assert Lab(LabTopology(prefix=PREFIX)).topo.clustered  # a fresh Lab finds it clustered


def test_the_sb_leader_killed_mid_migration(lab: Lab) -> None:
    site = lab.site()
    dst = other_chassis(site, "vm1")
    clients = SiteClients.connect(site)
    hv = EmulatedHypervisor(site)
    faults = LabFaults(lab)
    before = roles(lab.topo)["SB"]
    injector = FaultPlan.parse("sb-leader-kill:200").injector(faults, dst)
    try:
        migrate(site, "vm1", dst, MigrationOptions(strategy="port-ready", copy_ms=100,
                                                   ready_timeout_s=60),
                hv, clients, observers=[injector])  # fmt: skip
    finally:
        injector.finish()
    assert injector.error is None
    killed = next(d for _, e, d in injector.events if e == "fault.start")
    assert any(f"ovsdb-server-{m}" in killed for m, r in before.items() if r == "leader")
    site = site.with_vm_on("vm1", dst)
    lab.save_site(site)
    left = scan(site, clients, hv, [faults.leftovers])
    assert left.clean, left.items

    def rejoined() -> bool:
        return one_leader(roles(lab.topo)["SB"])

    host.wait_for("the SB cluster with one leader and three members", rejoined, 30.0)
