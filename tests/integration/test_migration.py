"""Live migration on a real OVN lab (ovsdb-server, ovn-northd, ovn-controller,
ovs-vswitchd in namespaces) with emulated guests and a real prober on a third chassis.

One lab for the module (prefix ``cotm``, the default lab dir so the CLI finds it); tests
run in order and each leaves the lab consistent for the next (vm1 position is read from
the site, never assumed).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from labkit import (
    assert_rolled_back,
    lab_prefix,
    links,
    other_chassis,
    running_lab,
    stalled,
    sync_chassis,
    vswitch,
)

from cutover.errors import (
    InvalidMigration,
    MigrationAborted,
    UnknownChassis,
    UnknownVm,
    WaitTimeout,
)
from cutover.guest.emulated import EmulatedHypervisor
from cutover.lab import Lab
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationOptions
from cutover.migration.orchestrator import MigrationReport, migrate
from cutover.ovsdb.sb import binding_state
from cutover.probe.analysis import summarize
from cutover.probe.client import Prober
from cutover.site import Site

pytestmark = [pytest.mark.integration]

PREFIX = lab_prefix("cotm")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(PREFIX)




def _run(lab: Lab, strategy: str, clients: SiteClients, **opts: float | str) -> MigrationReport:
    site = lab.site()
    dst = other_chassis(site, "vm1")
    report = migrate(
        site, "vm1", dst, MigrationOptions(strategy=strategy, **opts),  # type: ignore[arg-type]
        EmulatedHypervisor(site), clients,
    )
    lab.save_site(site.with_vm_on("vm1", dst))
    return report


def _probe(site: Site, seconds: float) -> tuple[int, int]:
    """(sent, answered) probes from the client to vm1 over ``seconds``."""
    with Prober(site, site.clients[0], site.vm_named("vm1"), 5.0) as p:
        p.start()
        time.sleep(seconds)
        samples = p.stop()
    s = summarize(samples, 5.0)
    return s.probes_sent, s.probes_sent - s.probes_lost


def test_each_chassis_has_its_own_connection(lab: Lab) -> None:
    """Reached locally (no agent in the site), each chassis has its own OVSDB connection."""
    from dataclasses import replace

    from cutover.chassis.local import LocalChassis

    site = lab.site()
    local = replace(site, chassis=tuple(replace(c, agent=None) for c in site.chassis))
    chassis = SiteClients.connect(local).chassis
    a, b = chassis["hv1"], chassis["hv2"]
    assert isinstance(a, LocalChassis) and isinstance(b, LocalChassis)
    hv1, hv2 = a.vswitch, b.vswitch
    assert hv1.system_id() == "hv1"
    assert hv2.system_id() == "hv2"
    assert type(hv1.api) is not type(hv2.api)
    assert hv1.api.ovsdb_connection is not hv2.api.ovsdb_connection


def test_bad_input_changes_nothing(lab: Lab, clients: SiteClients) -> None:
    site = lab.site()
    vm = site.vm_named("vm1")
    before = clients.nb.lsp_options(vm.lsp)
    hv = EmulatedHypervisor(site)
    with pytest.raises(UnknownVm, match="nosuch"):
        migrate(site, "nosuch", "hv2", MigrationOptions(), hv, clients)
    with pytest.raises(UnknownChassis, match="hv9"):
        migrate(site, "vm1", "hv9", MigrationOptions(), hv, clients)
    with pytest.raises(InvalidMigration, match="already runs"):
        migrate(site, "vm1", vm.chassis, MigrationOptions(), hv, clients)
    with pytest.raises(InvalidMigration, match="strategy"):
        migrate(site, "vm1", other_chassis(site, "vm1"), MigrationOptions(strategy="x"), hv,
                clients)
    assert clients.nb.lsp_options(vm.lsp) == before


def test_claim_migration_moves_the_port_and_cleans_the_source(
    lab: Lab, clients: SiteClients
) -> None:
    src = lab.site().vm_named("vm1").chassis
    report = _run(lab, "claim", clients)
    site = lab.site()
    vm = site.vm_named("vm1")
    assert vm.chassis == report.dst != src
    names = [e[1] for e in report.timeline]
    assert names.index("claim.seen") < names.index("switchover") < names.index("bound")
    binding = clients.sb.binding(vm.lsp)
    assert binding is not None
    assert binding.chassis == report.dst and binding.additional == ()
    assert clients.nb.requested_chassis(vm.lsp) == [report.dst]
    assert "activation-strategy" not in clients.nb.lsp_options(vm.lsp)
    assert vswitch(site, src).interface(vm.tap) is None
    assert vm.tap not in links(site, src)
    sent, answered = _probe(site, 0.5)
    assert sent > 50 and answered >= 0.9 * sent  # the first probe may meet an unresolved tunnel


def test_legacy_plugs_at_switchover(lab: Lab, clients: SiteClients) -> None:
    report = _run(lab, "legacy", clients)
    names = [e[1] for e in report.timeline]
    assert "network.prepared" not in names
    assert names.index("source.paused") < names.index("plug.start") < names.index("switchover")
    assert report.ready_wait_ms == 0.0
    sent, answered = _probe(lab.site(), 0.5)
    assert sent > 50 and answered >= 0.9 * sent


def test_claim_timeout_rolls_back_and_vm_keeps_its_network(
    lab: Lab, clients: SiteClients
) -> None:
    site = lab.site()
    vm = site.vm_named("vm1")
    src, dst = vm.chassis, other_chassis(site, "vm1")
    hv = EmulatedHypervisor(site)
    # armed before anything happens: fires if the SB ever shows another chassis on the port
    other = clients.sb.watch_binding(
        vm.lsp, lambda b: b.chassis != src or bool(b.additional), "a chassis besides the source"
    )
    with Prober(site, site.clients[0], vm, 5.0) as prober:
        prober.start()
        with stalled(site, dst, "dst:2500") as injector, pytest.raises(MigrationAborted) as info:
            migrate(site, "vm1", dst, MigrationOptions(strategy="claim", ready_timeout_s=0.5),
                    hv, clients, observers=[injector])
        samples = prober.stop()
    # the stall is over: the destination's controller catches up with the migration and its
    # rollback; a claim it made on the way would have fired the watch before this returns
    sync_chassis(clients, dst)
    other.cancel()
    assert not other.fired, f"after the rollback: {other.row and binding_state(other.row)}"
    cause = info.value.cause
    assert isinstance(cause, WaitTimeout)
    assert "additional_chassis=[]" in cause.seen
    assert info.value.step == "wait-ready"
    assert_rolled_back(clients, hv, site, vm, src, dst)
    # the VM never stopped answering on its source
    summary = summarize(samples, 5.0)
    assert summary.probes_sent > 50
    assert summary.probes_lost <= 1
    binding = clients.sb.binding(vm.lsp)  # read after the sync point above
    assert binding is not None and binding.chassis == src and binding.additional == ()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cutover.cli", "--prefix", PREFIX, *args],
        capture_output=True, text=True, timeout=120,
    )


def test_cli_errors_are_one_line_and_nonzero(lab: Lab) -> None:
    """Bad requests exit 2, other failures 1; each prints one ``Type: message`` line."""
    before = lab.site()
    r = _cli("migrate", "nosuch", "--to", "hv2")
    assert r.returncode == 2
    assert r.stderr.startswith("UnknownVm: ") and r.stderr.count("\n") == 1
    r = _cli("lab", "up")
    assert r.returncode == 1 and r.stderr.startswith("LabAlreadyUp: ")
    r = _cli("migrate", "vm1", "--to", "hv2", "--stall", "dst:abc")
    assert r.returncode == 2 and r.stderr.startswith("InputError: ")
    # an option that conflicts with the running lab: refused before anything runs
    r = _cli("bench", "--chassis", "4", "--runs", "1")
    assert r.returncode == 2 and "runs 3 chassis but --chassis is 4" in r.stderr
    assert r.stderr.count("\n") == 1
    assert lab.site() == before and lab.status().state == "up"


def test_cli_migrate_and_bench(lab: Lab, tmp_path: object) -> None:
    site = lab.site()
    dst = other_chassis(site, "vm1")
    r = _cli("migrate", "vm1", "--to", dst, "--strategy", "claim", "--copy-ms", "100")
    assert r.returncode == 0, r.stderr
    assert lab.site().vm_named("vm1").chassis == dst
    out = f"{tmp_path}/bench"
    r = _cli("bench", "--strategy", "legacy", "--strategy", "claim", "--runs", "1",
             "--copy-ms", "100", "--out", out)
    assert r.returncode == 0, r.stderr
    from pathlib import Path

    from cutover.bench.results import BenchResult

    result = BenchResult.load(Path(out) / "bench.json")
    assert [r.strategy for r in result.runs] == ["legacy", "claim"]
    ovn = lab.site().extra["ovn"]  # the lab's own binaries, not the host's
    assert result.environment["ovn"] == ovn["ovn"]
    assert result.environment["ovs"] == ovn["ovs"]
    assert {r.ovn for r in result.runs} == {ovn["ovn"]}
    for run in result.runs:
        assert run.error is None
        assert run.probes_sent > 100
        # the source is paused 30 ms before the switchover: at least that long silent
        assert run.blackout_ms >= 30.0 and run.max_rtt_ms is not None
        # one run of lost probes lies inside one silence; the loss as a whole may be
        # split over several (docs/metrics.md), so only the longest run is bounded
        longest_run = max((n for _, _, n in run.extra["loss_runs"]), default=0)
        assert longest_run * run.probe_interval_ms <= (
            run.blackout_ms + run.probe_interval_ms + run.max_rtt_ms)
        assert any(e.event == "switchover" for e in run.timeline)
    assert (Path(out) / "blackout.png").stat().st_size > 0
