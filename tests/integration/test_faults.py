"""Control-plane faults during a real migration (standalone NB/SB lab, emulated guests).

One migration per fault kind: the SB server restarted and paused, ovn-northd paused, the
destination's ovn-controller restarted during the readiness wait and right after it. Each
must complete or roll back within its timeouts, the VM must keep answering, and the
leftover scan must find nothing - and the scan itself must find what a half-done
migration leaves.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import lab_prefix, other_chassis, running_lab

from cutover import cli
from cutover.bench.faults import FaultInjector, FaultPlan
from cutover.bench.leftovers import scan
from cutover.bench.results import BenchResult
from cutover.errors import ControllerDown, MigrationAborted
from cutover.guest.emulated import EmulatedHypervisor
from cutover.lab import Lab
from cutover.lab.faults import LabFaults
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationOptions
from cutover.migration.orchestrator import MigrationReport, migrate
from cutover.probe.analysis import summarize
from cutover.probe.client import Prober
from cutover.site import Site

pytestmark = [pytest.mark.integration]

PREFIX = lab_prefix("cofa")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(PREFIX)


def answered(site: Site, vm: str = "vm1", seconds: float = 0.4) -> float:
    """Share of the client's probes to ``vm`` answered over ``seconds``."""
    with Prober(site, site.clients[0], site.vm_named(vm)) as prober:
        prober.start()
        time.sleep(seconds)
        s = summarize(prober.stop(), prober.interval_ms, prober.duplicates)
    return 1.0 - s.loss_ratio


def with_fault(lab: Lab, strategy: str, spec: str
               ) -> tuple[MigrationReport | None, MigrationAborted | None, FaultInjector, int]:
    """Migrate vm1 away from home under ``spec``; then the leftover scan must be clean and
    the VM must answer where it is; finally it goes home (unmeasured). Returns the report
    or the abort, the injector and the SB reconnects the orchestrator saw."""
    site = lab.site()
    home = site.vm_named("vm1").chassis
    dst = other_chassis(site, "vm1")
    clients = SiteClients.connect(site)
    hv = EmulatedHypervisor(site)
    faults = LabFaults(lab)
    injector = FaultPlan.parse(spec).injector(faults, dst)
    reconnects = clients.sb.reconnects
    report: MigrationReport | None = None
    aborted: MigrationAborted | None = None
    options = MigrationOptions(strategy=strategy, copy_ms=100, ready_timeout_s=30)
    try:
        report = migrate(site, "vm1", dst, options, hv, clients, observers=[injector])
    except MigrationAborted as e:
        aborted = e
    finally:
        injector.finish()
    assert injector.started and injector.error is None, injector.error
    if report is not None:
        site = site.with_vm_on("vm1", dst)
        lab.save_site(site)
    left = scan(site, clients, hv, [faults.leftovers])
    assert left.clean, left.items
    assert answered(site) > 0.8
    if report is not None:  # home again, so every case starts alike
        migrate(site, "vm1", home, MigrationOptions(strategy="claim", copy_ms=50), hv, clients)
        lab.save_site(site.with_vm_on("vm1", home))
    return report, aborted, injector, clients.sb.reconnects - reconnects


def wall(report: MigrationReport, event: str) -> float:
    return report.started_ms + next(t for t, n, _ in report.timeline if n == event)


def test_a_claim_wait_survives_an_sb_restart(lab: Lab) -> None:
    report, aborted, injector, reconnects = with_fault(lab, "claim", "sb-restart:300")
    assert aborted is None and report is not None
    assert reconnects >= 1  # the orchestrator's SB connection really went away
    restarted = next(t for t, e, _ in injector.events if e == "fault.end")
    assert wall(report, "claim.seen") > restarted  # the claim came over the new session


@pytest.mark.parametrize(("strategy", "spec"), [
    ("port-ready", "sb-pause:500"),
    ("claim", "northd-pause:500"),
])  # fmt: skip
def test_a_paused_server_delays_readiness_and_the_migration_completes(
    lab: Lab, strategy: str, spec: str
) -> None:
    report, aborted, injector, _ = with_fault(lab, strategy, spec)
    assert aborted is None and report is not None
    resumed = next(t for t, e, _ in injector.events if e == "fault.end")
    assert wall(report, "ready") >= resumed  # nothing could be ready while it was stopped


def test_a_destination_controller_restarted_in_the_wait_still_migrates_claim(lab: Lab) -> None:
    report, aborted, _, _ = with_fault(lab, "claim", "dst-controller-restart-wait:0")
    assert aborted is None and report is not None


def test_a_destination_controller_restarted_after_readiness_aborts_port_ready(lab: Lab) -> None:
    report, aborted, injector, _ = with_fault(lab, "port-ready",
                                              "dst-controller-restart-ready:0")
    assert report is None and aborted is not None
    assert isinstance(aborted.cause, ControllerDown)
    assert aborted.step in ("confirm-ready", "still-alive", "copy-memory")
    assert any(e == "fault.old-exited" for _, e, _ in injector.events)


def test_the_scan_finds_what_a_half_done_migration_leaves(lab: Lab) -> None:
    site = lab.site()
    vm = site.vm_named("vm1")
    dst = other_chassis(site, "vm1")
    clients = SiteClients.connect(site)
    faults = LabFaults(lab)
    northd = faults.northd()
    clients.nb.set_requested_chassis(vm.lsp, [vm.chassis, dst], "rarp")
    faults.signal(northd, signal.SIGSTOP)
    try:
        left = scan(site, clients, None, [faults.leftovers], sync_timeout_s=1.0)
    finally:
        faults.signal(northd, signal.SIGCONT)
        clients.nb.set_requested_chassis(vm.lsp, [vm.chassis])
    text = "\n".join(left.items)
    assert f"requested-chassis={vm.chassis},{dst}" in text
    assert "activation-strategy=rarp" in text
    assert "ovn-northd" in text and "stopped" in text
    assert left.sync_ms is None  # hv_cfg cannot move while northd is stopped
    assert scan(site, clients, None, [faults.leftovers]).clean


def test_the_cli_bench_injects_a_fault_and_scans(lab: Lab, tmp_path: Path) -> None:
    """``cutover bench --fault`` on the running lab: the run records its fault, outcome,
    reconnects and a clean leftover scan, and the report has the faults section."""
    out = tmp_path / "bench"
    code = cli.main(["--prefix", PREFIX, "bench", "--strategy", "claim", "--fault",
                     "sb-restart:200", "--runs", "1", "--copy-ms", "50", "--out", str(out)])
    assert code == 0
    result = BenchResult.load(out / "bench.json")
    (run,) = result.runs
    assert run.fault == "sb-restart:200" and run.ok
    assert run.extra["outcome"] == "migrated" and run.extra["leftovers"]["clean"]
    assert run.extra["reconnects"]["sb"] >= 1
    assert any(e.event == "fault.end" for e in run.timeline)
    assert "## Faults" in (out / "report.md").read_text()
