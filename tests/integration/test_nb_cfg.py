"""The ``nb-cfg`` strategy (Neutron master's WaitForChassisNbCfgEvent) and the SB write
count on real OVN labs: 3 chassis (prefix ``conb``) and 4 chassis (prefix ``cond``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from labkit import assert_rolled_back, lab_prefix, other_chassis, running_lab, stalled

from cutover.bench.results import RunResult
from cutover.bench.runner import BenchPlan, run_bench
from cutover.errors import InvalidMigration, MigrationAborted, WaitTimeout
from cutover.guest.emulated import EmulatedHypervisor
from cutover.lab import Lab
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationOptions
from cutover.migration.orchestrator import migrate

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(lab_prefix("conb"))


def test_nb_cfg_migration_waits_for_the_destination_to_catch_up(
    lab: Lab, clients: SiteClients
) -> None:
    site = lab.site()
    dst = other_chassis(site, "vm1")
    before = clients.nb.nb_cfg()
    report = migrate(
        site, "vm1", dst, MigrationOptions(strategy="nb-cfg", copy_ms=100),
        EmulatedHypervisor(site), clients,
    )
    lab.save_site(site.with_vm_on("vm1", dst))
    names = [e[1] for e in report.timeline]
    # (the claim can land while the prepare transaction is still being confirmed, so
    # "network.prepared", marked after the commit, may come after "claim.seen")
    assert (
        names.index("claim.seen")
        < names.index("nb_cfg.bumped")
        < names.index("nb-cfg.seen")
        < names.index("ready")
        < names.index("switchover")
    )
    bumped = dict((e[1], e[2]) for e in report.timeline)["nb_cfg.bumped"]
    assert bumped == f"NB_Global.nb_cfg={before + 1}"
    assert f"Chassis_Private {dst}: nb_cfg=" in report.evidence
    # ovn-controller stamps nb_cfg_timestamp: a real detection latency, host clock shared
    assert report.detection_latency_ms is not None
    assert 0.0 <= report.detection_latency_ms < 1000.0
    binding = clients.sb.binding(site.vm_named("vm1").lsp)
    assert binding is not None and binding.chassis == dst and binding.additional == ()


def test_disabled_nb_cfg_reporting_is_refused_before_anything_changes(
    lab: Lab, clients: SiteClients
) -> None:
    site = lab.site()
    vm = site.vm_named("vm1")
    nb_global = clients.nb.rows("NB_Global")[0].uuid
    before = clients.nb.lsp_options(vm.lsp)
    clients.nb.execute(clients.nb.api.db_set(
        "NB_Global", nb_global, ("options", {"enable_chassis_nb_cfg_update": "false"})
    ))
    try:
        with pytest.raises(InvalidMigration, match="never end"):
            migrate(site, "vm1", other_chassis(site, "vm1"), MigrationOptions(strategy="nb-cfg"),
                    EmulatedHypervisor(site), clients)
    finally:
        clients.nb.execute(clients.nb.api.db_remove(
            "NB_Global", nb_global, "options", "enable_chassis_nb_cfg_update", if_exists=True
        ))
    assert clients.nb.lsp_options(vm.lsp) == before


def test_stalled_destination_times_out_and_rolls_back(
    lab: Lab, clients: SiteClients
) -> None:
    site = lab.site()
    vm = site.vm_named("vm1")
    src, dst = vm.chassis, other_chassis(site, "vm1")
    hv = EmulatedHypervisor(site)
    with stalled(site, dst, "dst:2500") as injector, pytest.raises(MigrationAborted) as info:
        migrate(site, "vm1", dst, MigrationOptions(strategy="nb-cfg", ready_timeout_s=0.5),
                hv, clients, observers=[injector])
    cause = info.value.cause
    assert isinstance(cause, WaitTimeout)
    assert info.value.step == "wait-ready"
    assert "additional_chassis=[]" in cause.seen
    assert f"Chassis_Private {dst}: nb_cfg=" in cause.seen
    assert_rolled_back(clients, hv, site, vm, src, dst)


def _bench(lab: Lab) -> list[RunResult]:
    site = lab.site()
    plan = BenchPlan(strategies=("claim", "nb-cfg"), runs=1, copy_ms=100)
    result = run_bench(site, plan, EmulatedHypervisor(site), lab.save_site, lab.apply_load)
    for run in result.runs:
        assert run.error is None, run.error
        assert run.sb_writes is not None
        assert run.sb_writes == sum(run.extra["sb_writes_by_table"].values())
    return result.runs


def _chassis_private_writes(run: RunResult) -> int:
    return int(run.extra["sb_writes_by_table"].get("Chassis_Private", 0))


def test_sb_writes_nb_cfg_makes_every_chassis_write(lab: Lab) -> None:
    claim, nb_cfg = _bench(lab)
    assert _chassis_private_writes(claim) == 0
    assert claim.detection_latency_ms is None  # Port_Binding carries no timestamp
    assert _chassis_private_writes(nb_cfg) == 3  # one row per chassis, not just dst
    assert nb_cfg.extra["sb_writes_by_table"].get("SB_Global") == 1  # northd copies nb_cfg
    assert nb_cfg.detection_latency_ms is not None


@pytest.fixture(scope="module")
def lab4() -> Iterator[Lab]:
    yield from running_lab(lab_prefix("cond"), n_chassis=4)


def test_sb_writes_grow_with_the_chassis_count(lab4: Lab) -> None:
    claim, nb_cfg = _bench(lab4)
    assert _chassis_private_writes(claim) == 0
    assert _chassis_private_writes(nb_cfg) == 4
