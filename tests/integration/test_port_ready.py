"""``port-ready`` on a real OVN lab: the destination's own flows gate the switchover.

One lab for the module (prefix ``cotp``); each test reads vm1's position from the site.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from labkit import (
    assert_rolled_back,
    lab_prefix,
    ofctl_children,
    other_chassis,
    running_lab,
    stalled,
    sync_chassis,
)

from cutover.chassis.local import rundir_for
from cutover.errors import MigrationAborted, WaitTimeout
from cutover.guest.emulated import EmulatedHypervisor
from cutover.lab import Lab
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationOptions
from cutover.migration.orchestrator import migrate
from cutover.ovsdb.sb import binding_state
from cutover.probe.analysis import summarize
from cutover.probe.client import Prober
from cutover.readiness.port_ready import PATH_FLOWS_ONLY, PATH_INSTALLED

pytestmark = [pytest.mark.integration]

PREFIX = lab_prefix("cotp")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(PREFIX)






def test_rundir_matches_the_lab(lab: Lab) -> None:
    site = lab.site()
    for ch in site.chassis:
        assert rundir_for(ch) == site.extra["ovs_rundir"][ch.name]


def test_port_ready_migration_shows_the_flows(lab: Lab, clients: SiteClients) -> None:
    site = lab.site()
    dst = other_chassis(site, "vm1")
    report = migrate(site, "vm1", dst, MigrationOptions(strategy="port-ready", copy_ms=100),
                     EmulatedHypervisor(site), clients)
    lab.save_site(site.with_vm_on("vm1", dst))
    names = [e[1] for e in report.timeline]
    assert names.index("port-ready.seen") < names.index("switchover") < names.index("bound")
    assert report.evidence.startswith((PATH_INSTALLED, PATH_FLOWS_ONLY))
    assert "ingress=True egress=True" in report.evidence
    # with activation-strategy=rarp the destination blocks the port until the VM's RARP,
    # from the engine run that sees its claim committed; ovn-installed can come one run
    # earlier, so the verdict may see the flows just before the blocks arrive
    assert (("blocked-awaiting-activation" in report.evidence
            and "rarp->controller=True" in report.evidence)
            or ": open (ingress=True egress=True" in report.evidence), report.evidence
    if report.evidence.startswith(PATH_INSTALLED):
        assert report.detection_latency_ms is not None
        assert 0 <= report.detection_latency_ms < 1000
    assert ofctl_children() == []
    # the first probe towards a new VTEP may be lost while OVS resolves its ARP
    with Prober(lab.site(), site.clients[0], site.vm_named("vm1"), 5.0) as p:
        p.start()
        time.sleep(0.5)
        s = summarize(p.stop(), 5.0)
    assert s.probes_sent > 50 and s.probes_lost <= 3


def test_ready_waits_for_the_frozen_controller(lab: Lab, clients: SiteClients) -> None:
    site = lab.site()
    dst = other_chassis(site, "vm1")
    with stalled(site, dst, "dst:2000") as injector:
        report = migrate(site, "vm1", dst, MigrationOptions(strategy="port-ready", copy_ms=100),
                         EmulatedHypervisor(site), clients, observers=[injector])
    lab.save_site(site.with_vm_on("vm1", dst))
    window = injector.window_ms
    assert window is not None
    at = {n: t for t, n, _ in report.timeline}
    assert report.started_ms + at["port-ready.seen"] > window[1], (report.timeline, window)
    # the reported wait covers the stall's remainder from the preparation on (the stall
    # began at the plug; how much of it the plug and the incoming guest used varies)
    assert report.ready_wait_ms >= window[1] - (report.started_ms + at["network.prepared"])


def test_port_ready_timeout_rolls_back(lab: Lab, clients: SiteClients) -> None:
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
            migrate(site, "vm1", dst,
                    MigrationOptions(strategy="port-ready", ready_timeout_s=0.5),
                    hv, clients, observers=[injector])
        samples = prober.stop()
    # the stall is over: the destination's controller catches up with the migration and its
    # rollback; a claim it made on the way would have fired the watch before this returns
    sync_chassis(clients, dst)
    other.cancel()
    assert not other.fired, f"after the rollback: {other.row and binding_state(other.row)}"
    cause = info.value.cause
    assert isinstance(cause, WaitTimeout)
    assert info.value.step == "wait-ready"
    assert f"Interface {vm.tap} external_ids=" in cause.seen
    assert "additional_chassis=[]" in cause.seen
    assert "'ovn-installed': 'true'" not in cause.seen
    assert ofctl_children() == []
    assert_rolled_back(clients, hv, site, vm, src, dst)
    summary = summarize(samples, 5.0)
    assert summary.probes_sent > 50 and summary.probes_lost <= 1
    binding = clients.sb.binding(vm.lsp)  # read after the sync point above
    assert binding is not None and binding.chassis == src and binding.additional == ()


def test_flows_only_path_when_ovn_installed_never_comes(lab: Lab, clients: SiteClients) -> None:
    """What a build without ovn-installed for an additional chassis gets: the flows on the
    bridge, once the grace for ovn-installed has passed."""
    from cutover.chassis.base import Vif
    from cutover.chassis.local import LocalChassis
    from cutover.network.binding import BindingController
    from cutover.readiness.port_ready import PortReadyReadiness

    site = lab.site()
    vm = site.vm_named("vm1")
    src, dst = site.chassis_named(vm.chassis), site.chassis_named(other_chassis(site, "vm1"))
    chassis, binding = LocalChassis(dst, clients.sb, grace_ms=200.0), BindingController(clients.nb)
    check = PortReadyReadiness({dst.name: chassis}, use_ovn_installed=False)
    chassis.plug(Vif.of(vm))
    try:
        check.arm(vm, src, dst)
        started = time.time() * 1000.0
        binding.prepare(vm.lsp, src.name, dst.name, "rarp")
        evidence = check.wait(10.0)
    finally:
        check.disarm()
        binding.revert(vm.lsp, src.name)
        chassis.unplug(Vif.of(vm))
    assert evidence.detail.startswith(PATH_FLOWS_ONLY)
    assert ": blocked-awaiting-activation (" in evidence.detail or ": open (" in evidence.detail
    assert 200.0 <= evidence.seen_ms - started < 10_000.0
    assert ofctl_children() == []
