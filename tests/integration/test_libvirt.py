"""QEMU guests through libvirt (one libvirtd per chassis namespace) on the real OVN lab.

One lab for the module (prefix ``col``): a claim migration measured by the prober with
libvirt's figures in the run record, a readiness timeout that rolls back (the source
domain keeps running with its network; no destination domain, TAP or OVS port), and
``lab down`` stopping every libvirtd and every QEMU that libvirt started.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Iterator

import pytest
from labkit import assert_rolled_back, lab_prefix, other_chassis, stalled, tap_offloads

from cutover.bench.runner import BenchPlan, run_bench
from cutover.errors import MigrationAborted
from cutover.guest.libvirt import LibvirtHypervisor
from cutover.guest.select import GuestOptions
from cutover.lab import Lab, LabTopology, host
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationOptions
from cutover.migration.orchestrator import migrate
from cutover.ovsdb.connection import close_all
from cutover.probe.client import Prober

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and libvirtd"),
    pytest.mark.skipif(shutil.which("libvirtd") is None and os.environ.get("CI") != "true",
                       reason="libvirt-daemon not installed (scripts/install-debs)"),
]

PREFIX = lab_prefix("col")


def _ours() -> list[int]:
    """libvirtd and QEMU processes of this module's lab."""
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            line = host.cmdline(int(p)) or ""
            if (f"/{PREFIX}/" in line and "libvirtd" in line) or \
                    f"guest=cutover.guest.{PREFIX}-" in line:
                found.append(int(p))
    return found


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab(LabTopology(prefix=PREFIX))
    lab.down()
    site = lab.up()
    site = dataclasses.replace(site, extra={**site.extra, **GuestOptions("libvirt").record()})
    lab.save_site(site)
    hv = LibvirtHypervisor(site)
    try:
        for vm in site.vms:
            hv.ensure_running(vm)
    finally:
        hv.close()
    deadline = time.monotonic() + 15.0  # a fresh guest's first ARP may meet a cold tunnel
    while not _answered(lab) and time.monotonic() < deadline:
        pass
    yield lab
    close_all()
    assert _ours() != []  # the daemons and guests ran until now ...
    assert lab.down() == []
    assert host.list_netns(PREFIX) == []
    assert _ours() == []  # ... and lab down stopped every one of them


def _answered(lab: Lab) -> bool:
    site = lab.site()
    with Prober(site, site.clients[0], site.vm_named("vm1"), 5.0) as p:
        p.start()
        time.sleep(0.3)
        return any(r is not None for _, _, r in p.stop())


@pytest.fixture
def hv(lab: Lab) -> Iterator[LibvirtHypervisor]:
    h = LibvirtHypervisor(lab.site())
    yield h
    h.close()


def test_claim_migration_through_libvirt_is_measured(lab: Lab, hv: LibvirtHypervisor) -> None:
    site = lab.site()
    home = site.vm_named("vm1").chassis
    plan = BenchPlan(strategies=("claim",), runs=1, guest="libvirt")
    result = run_bench(site, plan, hv, lab.save_site, lambda _l, _c: site)
    (run,) = result.runs
    # error None: the VM answered again before the capture ended (an open silence fails
    # the run). How long it was dark is the bench's to measure, not a test's: this path
    # has shown a 1.8 s outage after the resume in 1 of 3 CI runs (under investigation).
    assert run.error is None
    assert run.probes_sent > 100 and run.blackout_ms >= run.extra["guest_pause_ms"] > 0
    assert run.extra["qemu_migration_ms"] > 0 and run.extra["ram_transferred_mb"] > 10
    names = [e.event for e in run.timeline]
    assert names.index("guest.stop") < names.index("guest.resume")
    vm = lab.site().vm_named("vm1")
    assert vm.chassis == home and hv.status(vm, home) == "running"
    assert [c.name for c in site.chassis if hv.status(vm, c.name) is not None] == [home]
    assert tap_offloads(lab.site(), vm) == (0, 0)  # <driver><guest csum='off' .../>


def test_readiness_timeout_keeps_the_source_domain(
    lab: Lab, hv: LibvirtHypervisor, clients: SiteClients
) -> None:
    site = lab.site()
    dst = other_chassis(site, "vm1")
    # outlasts the incoming domain's start plus the 0.5 s wait; cut short after the rollback
    stall = stalled(site, dst, "dst:20000", wait_over=False)
    with stall as injector, pytest.raises(MigrationAborted) as err:
        migrate(site, "vm1", dst, MigrationOptions(strategy="claim", ready_timeout_s=0.5),
                hv, clients, observers=[injector])
    assert err.value.step == "wait-ready"
    vm = site.vm_named("vm1")
    assert hv.status(vm, vm.chassis) == "running"
    assert_rolled_back(clients, hv, site, vm, vm.chassis, dst)  # type: ignore[arg-type]
    with Prober(site, site.clients[0], vm, 5.0) as p:
        p.start()
        time.sleep(0.4)
        samples = p.stop()
    assert len(samples) > 20 and all(r is not None for _, _, r in samples)
