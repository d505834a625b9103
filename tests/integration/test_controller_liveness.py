"""A destination whose ovn-controller is dead is not ready (real OVN lab).

SIGKILL leaves the dead controller's flows on br-int, so a flow check alone would pass on
them and the VM would switch over into a chassis nobody maintains. Killed at three
moments - before the readiness is armed, during the wait, after the evidence but before
the switchover - the migration must abort before the point of no return: the VM keeps
answering on its source and nothing is left on the destination.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from labkit import assert_rolled_back, lab_prefix, ofctl_children, other_chassis, running_lab

from cutover.chassis import unixctl
from cutover.errors import ChassisUnreachable, ControllerDown, MigrationAborted
from cutover.guest.emulated import EmulatedHypervisor
from cutover.lab import Lab, host
from cutover.lab.chassis import CONTROLLER
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationOptions
from cutover.migration.orchestrator import migrate
from cutover.probe.analysis import summarize
from cutover.probe.client import Prober
from cutover.site import Site

pytestmark = [pytest.mark.integration]

PREFIX = lab_prefix("cotk")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(PREFIX)


class KillAt:
    """Timeline observer: SIGKILL ``chassis``' ovn-controller when ``event`` is marked
    (optionally pausing it first at ``pause_at``, so that the wait is still pending)."""

    def __init__(self, lab: Lab, chassis: str, event: str, pause_at: str | None = None) -> None:
        self.lab, self.chassis, self.event, self.pause_at = lab, chassis, event, pause_at
        self.ctl = lab.site().chassis_named(chassis).controller_ctl
        assert self.ctl is not None
        self.killed_ms: float | None = None

    def __call__(self, name: str) -> None:
        if name == self.pause_at:
            unixctl.call(str(self.ctl), "debug/pause")
        if name == self.event and self.killed_ms is None:
            os.kill(controller_pid(self.lab, self.chassis), signal.SIGKILL)
            self.killed_ms = time.time() * 1000.0


def controller_pid(lab: Lab, chassis: str) -> int:
    alive = [p.pid for p in lab.manifest.processes()
             if p.group == chassis and p.name == CONTROLLER and host.is_ours(p.pid, p.marker)]
    assert len(alive) == 1, alive
    return alive[0]


def answers_on_source(site: Site) -> float:
    """Share of 0.4 s of probes from the client to vm1 that were answered."""
    with Prober(site, site.clients[0], site.vm_named("vm1")) as prober:
        prober.start()
        time.sleep(0.4)
        s = summarize(prober.stop(), prober.interval_ms, prober.duplicates)
    return 1.0 - s.loss_ratio


def restart_controller(lab: Lab, chassis: str) -> None:
    ctl = lab.topo.dir / chassis / "ovn-controller.ctl"
    lab.restart_controller(chassis)

    def connected() -> bool:
        try:
            return unixctl.call(str(ctl), "connection-status", timeout=1.0).strip() == "connected"
        except ChassisUnreachable:
            return False

    host.wait_for(f"ovn-controller of {chassis} connected to the SB", connected, timeout=20.0)


@pytest.mark.parametrize(
    ("strategy", "kill_at", "pause_at", "failed_step"),
    [
        ("port-ready", "plug.done", None, "arm-readiness"),
        ("port-ready", "network.prepared", "plug.done", "wait-ready"),
        ("port-ready", "ready", None, "confirm-ready"),
        ("path-ready", "ready", None, "confirm-ready"),
    ],
)
def test_dead_destination_controller_aborts_before_the_switchover(
    lab: Lab, strategy: str, kill_at: str, pause_at: str | None, failed_step: str
) -> None:
    site = lab.site()
    vm = site.vm_named("vm1")
    src, dst = vm.chassis, other_chassis(site, "vm1")
    clients = SiteClients.connect(site)
    hv = EmulatedHypervisor(site)
    killer = KillAt(lab, dst, kill_at, pause_at)
    options = MigrationOptions(strategy=strategy, copy_ms=100, ready_timeout_s=20)
    try:
        with pytest.raises(MigrationAborted) as err:
            migrate(site, "vm1", dst, options, hv, clients, observers=[killer])
        aborted_ms = time.time() * 1000.0
        assert killer.killed_ms is not None, f"{kill_at} was never marked"
        assert err.value.step == failed_step
        assert isinstance(err.value.cause, ControllerDown)
        assert err.value.cause.chassis == dst and err.value.cause.role == "destination"
        # promptly: the death is an event, not the 20 s readiness timeout
        assert aborted_ms - killer.killed_ms < 3000.0
        assert_rolled_back(clients, hv, site, vm, src, dst)
        assert ofctl_children() == []
        state = clients.sb.binding(vm.lsp)
        assert state is not None and state.chassis == src and dst not in state.additional
        assert hv.status(vm, src) is not None
        assert answers_on_source(site) > 0.8
    finally:
        restart_controller(lab, dst)
    assert lab.site().vm_named("vm1").chassis == src


def test_a_restarted_destination_migrates_again(lab: Lab) -> None:
    """After the faults above the lab is whole again: port-ready migrates there."""
    site = lab.site()
    dst = other_chassis(site, "vm1")
    clients = SiteClients.connect(site)
    report = migrate(site, "vm1", dst, MigrationOptions(strategy="port-ready", copy_ms=100),
                     EmulatedHypervisor(site), clients)  # fmt: skip
    lab.save_site(site.with_vm_on("vm1", dst))
    assert any(name == "ready.confirmed" for _, name, _ in report.timeline)
