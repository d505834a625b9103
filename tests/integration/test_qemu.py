"""Real QEMU guests (TCG, Debian kernel, busybox initramfs) migrated on the real OVN lab.

One lab for the module (prefix ``coq``) whose VMs are QEMU guests; a prober on the third
chassis measures every migration. Covers: claim and port-ready migrations with QEMU's own
figures in the run record, the floor on a Linux bridge, and rollbacks (readiness timeout,
destination QEMU killed during the pre-copy and at the switchover) that leave the source
running with its network and nothing of the destination: no QEMU, QMP socket, TAP or
OVS port; and that the guests' TAPs carry no offloads (the lab NIC offers the guest none).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from labkit import (
    assert_rolled_back,
    lab_prefix,
    other_chassis,
    stalled,
    sync_chassis,
    tap_offloads,
)

from cutover.bench.floor import FloorNet, measure_floor
from cutover.bench.results import BenchResult
from cutover.bench.runner import BenchPlan, run_bench
from cutover.chassis.base import TapGateState, Vif
from cutover.errors import LabError, MigrationAborted, MigrationError
from cutover.guest import qemu_proc
from cutover.guest.qemu import QemuHypervisor
from cutover.guest.select import GuestOptions
from cutover.lab import Lab, LabTopology, host
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationOptions
from cutover.migration.orchestrator import migrate
from cutover.network.binding import BindingController
from cutover.ovsdb.connection import close_all
from cutover.probe.client import Prober
from cutover.site import Site

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces, TAPs and QEMU"),
]

PREFIX = lab_prefix("coq")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab(LabTopology(prefix=PREFIX))
    lab.down()
    site = lab.up()
    site = dataclasses.replace(site, extra={**site.extra, **GuestOptions("qemu").record()})
    lab.save_site(site)
    hv = QemuHypervisor(site)
    try:
        for vm in site.vms:
            hv.ensure_running(vm)
    finally:
        hv.close()
    _until_answering(lab.site())
    yield lab
    close_all()
    assert lab.down() == []
    assert host.list_netns(PREFIX) == []
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_lab_qemu(int(p))]


@pytest.fixture
def hv(lab: Lab) -> Iterator[QemuHypervisor]:
    h = QemuHypervisor(lab.site(), max_bandwidth_mib=64.0)
    yield h
    h.close()


def _is_lab_qemu(pid: int) -> bool:
    line = host.cmdline(pid) or ""
    return "qemu-system" in line and f"/{PREFIX}/" in line


def _answering(site: Site, seconds: float = 0.4) -> tuple[int, int]:
    """(sent, answered) probes from the client to vm1."""
    with Prober(site, site.clients[0], site.vm_named("vm1"), 5.0) as p:
        p.start()
        time.sleep(seconds)
        samples = p.stop()
    return len(samples), sum(r is not None for _, _, r in samples)


def _until_answering(site: Site, timeout_s: float = 15.0) -> None:
    """Wait until the freshly booted vm1 answers the client (its first ARP through a new
    tunnel may be dropped), so the first measured run starts from a working path."""
    deadline = time.monotonic() + timeout_s
    seen = (0, 0)
    while time.monotonic() < deadline:
        seen = _answering(site, 0.3)
        if seen[1] > 0:
            return
    raise AssertionError(f"vm1 never answered within {timeout_s} s (sent, answered): {seen}")


def _assert_source_kept(lab: Lab, hv: QemuHypervisor, clients: SiteClients, dst: str) -> None:
    site = lab.site()
    vm = site.vm_named("vm1")
    assert hv.status(vm, vm.chassis) == "running"
    assert hv.status(vm, dst) is None
    files = hv.files(vm, dst)
    assert [p for p in files.all() if p.exists()] == []
    assert_rolled_back(clients, hv, site, vm, vm.chassis, dst)  # type: ignore[arg-type]
    sent, answered = _answering(site)
    assert sent > 20 and answered == sent


def _kill_destination_later(hv: QemuHypervisor, site: Site, dst: str, mark: str,
                            delay_s: float) -> Callable[[str], None]:
    """An observer that SIGKILLs the destination QEMU ``delay_s`` after ``mark``."""
    vm = site.vm_named("vm1")

    def kill() -> None:
        pid = qemu_proc.find_pid(hv.files(vm, dst))
        assert pid is not None, f"no destination QEMU to kill at {mark}"
        os.kill(pid, signal.SIGKILL)

    def observer(name: str) -> None:
        if name == mark:
            if delay_s <= 0:
                kill()
            else:
                threading.Timer(delay_s, kill).start()

    return observer


def test_bench_claim_and_port_ready_with_qemu_figures(lab: Lab, hv: QemuHypervisor) -> None:
    site = lab.site()
    home = site.vm_named("vm1").chassis
    plan = BenchPlan(strategies=("claim", "port-ready"), runs=1, guest="qemu")
    result = run_bench(site, plan, hv, lab.save_site, lambda _l, _c: site)
    assert [r.error for r in result.runs] == [None, None]
    for run in result.runs:
        assert run.probes_sent > 100
        assert run.blackout_ms < 1000, run
        extra = run.extra
        assert 0 < extra["guest_pause_ms"] < 1000
        assert extra["qemu_status"] == "completed"
        assert extra["qemu_migration_ms"] > 0 and extra["ram_transferred_mb"] > 10
        assert extra["ram_mb"] == 128 and extra["max_bandwidth_mib"] == 64.0
        names = [e.event for e in run.timeline]
        assert names.index("guest.stop") < names.index("guest.resume")
    site = lab.site()
    vm = site.vm_named("vm1")
    assert vm.chassis == home  # the bench brought it home
    assert hv.status(vm, home) == "running"
    assert [c.name for c in site.chassis if hv.status(vm, c.name) is not None] == [home]


def test_floor_on_a_linux_bridge_leaves_nothing(lab: Lab) -> None:
    site = lab.site()
    plan = BenchPlan(strategies=("claim",), runs=1, guest="qemu")
    empty = BenchResult(started_at="now", environment={}, params={}, runs=[])
    result = measure_floor(empty, site, plan, GuestOptions("qemu"))
    (run,) = result.runs
    assert run.strategy == "floor" and run.error is None
    assert run.probes_sent > 100 and run.blackout_ms < 1000
    assert 0 < run.extra["guest_pause_ms"] < 1000
    names = set(FloorNet(site).ns.values())
    assert names.isdisjoint(host.list_netns(PREFIX))
    floor_dir = os.path.join(site.guest_dir, "floor")
    assert not [f for f in os.listdir(floor_dir) if f.endswith((".qmp", ".pid", ".sock"))]


def test_readiness_timeout_cancels_and_keeps_the_source(
    lab: Lab, hv: QemuHypervisor, clients: SiteClients
) -> None:
    site = lab.site()
    dst = other_chassis(site, "vm1")
    # the stall must outlast the incoming QEMU's start (seconds on a loaded machine) plus
    # the 0.5 s wait; it is cut short once the migration has rolled back
    stall = stalled(site, dst, "dst:20000", wait_over=False)
    with stall as injector, pytest.raises(MigrationAborted) as err:
        migrate(site, "vm1", dst, MigrationOptions(strategy="claim", ready_timeout_s=0.5),
                hv, clients, observers=[injector])
    assert err.value.step == "wait-ready"
    _assert_source_kept(lab, hv, clients, dst)


@pytest.mark.parametrize(("mark", "delay_s", "step"), [
    ("copy.start", 0.3, "copy-memory"),
    ("source.paused", 0.0, "switchover"),
])
def test_destination_qemu_dies_and_the_source_keeps_running(
    lab: Lab, hv: QemuHypervisor, clients: SiteClients, mark: str, delay_s: float, step: str
) -> None:
    site = lab.site()
    dst = other_chassis(site, "vm1")
    killer = _kill_destination_later(hv, site, dst, mark, delay_s)
    with pytest.raises(MigrationAborted) as err:
        migrate(site, "vm1", dst, MigrationOptions(strategy="claim"), hv, clients,
                observers=[killer])
    assert err.value.step == step, err.value
    _assert_source_kept(lab, hv, clients, dst)


def test_source_qemu_killed_in_the_copy_fails_it_at_once(
    lab: Lab, hv: QemuHypervisor, clients: SiteClients
) -> None:
    """The pre-copy of a 128 MiB guest at 16 MiB/s takes ~8 s; killing the source 0.5 s in
    must end the migration within a second, name the source, and leave no destination."""
    site = lab.site()
    vm = site.vm_named("vm1")
    dst = other_chassis(site, "vm1")
    slow = QemuHypervisor(site, max_bandwidth_mib=16.0)
    killed_at: list[float] = []

    def kill_source() -> None:
        pid = qemu_proc.find_pid(slow.files(vm, vm.chassis))
        assert pid is not None
        killed_at.append(time.monotonic())
        os.kill(pid, signal.SIGKILL)

    def observer(name: str) -> None:
        if name == "copy.start":
            threading.Timer(0.5, kill_source).start()

    try:
        with pytest.raises(MigrationError) as err:
            migrate(site, "vm1", dst, MigrationOptions(strategy="claim"), slow, clients,
                    observers=[observer])
        failed_after = time.monotonic() - killed_at[0]
        assert failed_after < 1.0, failed_after
        assert "source" in str(err.value) and "died" in str(err.value)
        assert slow.guest_state(vm, vm.chassis).state == "dead"
        assert slow.guest_state(vm, dst).state == "missing"
        assert clients.nb.requested_chassis(vm.lsp) == [vm.chassis]
    finally:
        slow.ensure_running(vm)  # boot it again for the next test
        slow.close()
    assert hv.guest_state(vm, vm.chassis).state == "running"


def _no_activation_left(clients: SiteClients, lsp: str, dst: str) -> None:
    state = clients.sb.binding(lsp)
    assert state is not None and dst not in state.activated, state


@pytest.mark.parametrize(("gate", "source_stopped"), [
    ("before-switchover", True),  # held in pre-switchover: the source's vCPUs are stopped
    ("converge-when-ready", False),  # kept from converging: the source runs throughout
])  # fmt: skip
def test_overlapping_gate_times_out_and_cancels_the_copy(
    lab: Lab, hv: QemuHypervisor, clients: SiteClients, gate: str, source_stopped: bool
) -> None:
    """The destination's controller is stalled past the readiness timeout while the copy
    (~1 s at 64 MiB/s) runs: before-switchover reaches pre-switchover and waits there with
    the source stopped, converge-when-ready never lets QEMU converge. Either way the
    timeout rolls back with ``migrate_cancel`` and the source runs on, network intact."""
    site = lab.site()
    vm = site.vm_named("vm1")
    dst = other_chassis(site, "vm1")
    options = MigrationOptions(strategy="claim", gate=gate, activation="pre",
                               ready_timeout_s=2.0)
    with stalled(site, dst, "dst:5000") as injector, pytest.raises(MigrationAborted) as err:
        report = migrate(site, "vm1", dst, options, hv, clients, observers=[injector])
        lab.save_site(site.with_vm_on("vm1", dst))
        raise AssertionError(f"not stalled: {report.timeline}")
    assert err.value.step == "wait-ready", err.value
    events = [e["event"] for e in hv.guest_events(vm, vm.chassis)]
    assert ("qemu.stop" in events) == source_stopped, events
    if source_stopped:  # and migrate_cancel resumed it
        assert "qemu.resume" in events[events.index("qemu.stop"):], events
    _no_activation_left(clients, vm.lsp, dst)
    _assert_source_kept(lab, hv, clients, dst)


def test_preactivation_is_cleared_by_a_rollback(
    lab: Lab, hv: QemuHypervisor, clients: SiteClients
) -> None:
    """The destination QEMU dies right after the pre-activation lifted its rarp blocks:
    the copy fails, and the rollback removes the SB activation it wrote."""
    site = lab.site()
    vm = site.vm_named("vm1")
    dst = other_chassis(site, "vm1")
    killer = _kill_destination_later(hv, site, dst, "preactivated", 0.0)
    options = MigrationOptions(strategy="port-ready", gate="before-switchover", activation="pre")
    with pytest.raises(MigrationAborted) as err:
        migrate(site, "vm1", dst, options, hv, clients, observers=[killer])
    assert err.value.step == "finish-copy", err.value
    _no_activation_left(clients, vm.lsp, dst)
    _assert_source_kept(lab, hv, clients, dst)


def test_converge_when_ready_with_preactivation(
    lab: Lab, hv: QemuHypervisor, clients: SiteClients
) -> None:
    """Success path: the destination is activated while the source runs, then QEMU may
    converge; the source stops only for its ordinary stop-and-copy."""
    site = lab.site()
    vm = site.vm_named("vm1")
    dst = other_chassis(site, "vm1")
    options = MigrationOptions(strategy="port-ready", gate="converge-when-ready",
                               activation="pre")
    report = migrate(site, "vm1", dst, options, hv, clients)
    lab.save_site(site.with_vm_on("vm1", dst))
    names = [name for _, name, _ in report.timeline]
    assert (names.index("ready") < names.index("preactivated") < names.index("copy.released")
            < names.index("source.paused") < names.index("switchover"))  # fmt: skip
    figures = hv.last_migration(vm)
    assert figures["convergence_held"] is True
    assert 0 < figures["guest_pause_ms"] < 1000
    # held down to its small tail (not converged early), released after the pre-activation
    assert figures["trickle_at_ms"] is not None, figures
    assert figures["trickle_reserve_mb"] < figures["hold_tail_target_mb"] < 8, figures
    assert 0 < figures["release_to_stop_ms"] < 1000, figures
    assert report.gate == "converge-when-ready" and report.switchover_ms is not None
    sent, answered = _answering(lab.site())
    assert sent > 20 and answered == sent
    # every verdict the agents published (port-ready's and the pre-activation's
    # port-open) is withdrawn: it was left behind once (the agent withdrew the wrong key)
    assert _published(clients) == {}


def _published(clients: SiteClients, settle_s: float = 2.0) -> dict[str, list[str]]:
    """cutover's keys left in any Chassis_Private, once the SB replica has caught up with
    the agents' withdrawals (a few ms; bounded)."""
    deadline = time.monotonic() + settle_s
    while True:
        keys = {str(r.name): sorted(k for k in r.external_ids if k.startswith("cutover-"))
                for r in clients.sb.rows("Chassis_Private")}  # fmt: skip
        keys = {name: ks for name, ks in keys.items() if ks}
        if not keys or time.monotonic() > deadline:
            return keys
        time.sleep(0.05)


def test_northd_keeps_a_preactivation_while_the_port_has_additional_chassis(
    lab: Lab, clients: SiteClients
) -> None:
    """The SB write pre-activation makes survives northd rewriting the port's options
    (northd.c "Retain activated chassis flags") while requested-chassis names two."""
    site = lab.site()
    vm = site.vm_named("vm1")
    dst = other_chassis(site, "vm1")
    binding = BindingController(clients.nb)
    try:
        binding.prepare(vm.lsp, vm.chassis, dst, "rarp")
        sync_chassis(clients, dst)
        assert clients.sb.activate_additional(vm.lsp, dst)
        assert not clients.sb.activate_additional(vm.lsp, dst)  # idempotent
        # any change of the LSP makes northd rebuild its SB options
        clients.nb.execute(clients.nb.api.db_set(
            "Logical_Switch_Port", vm.lsp, ("external_ids", {"cutover-test": "retain"})))
        sync_chassis(clients, dst)
        state = clients.sb.binding(vm.lsp)
        assert state is not None and state.activated == (dst,), state
    finally:
        assert clients.sb.deactivate_additional(vm.lsp, dst)
        binding.revert(vm.lsp, vm.chassis)
        clients.nb.execute(clients.nb.api.db_remove(
            "Logical_Switch_Port", vm.lsp, "external_ids", "cutover-test", if_exists=True))
    sync_chassis(clients, dst)
    _no_activation_left(clients, vm.lsp, dst)


def test_guest_taps_carry_no_offloads(lab: Lab) -> None:
    """The booted guests' TAPs have no checksum/TSO offload: with QEMU's defaults the guest
    driver's negotiation turns both on (checked by hand: "1 1"), and the destination QEMU
    turns them on again at the switchover - the link event that stalled the userspace
    vswitchd under L2 load (docs/switchover.md)."""
    site = lab.site()
    for vm in site.vms:
        assert tap_offloads(site, vm) == (0, 0), f"{vm.tap} on {vm.chassis}"


def test_lab_down_stops_qemu_guests() -> None:
    """A lab whose QEMU guests were never stopped: ``lab down`` ends them by pidfile."""
    prefix = lab_prefix("coqd")
    lab = Lab(LabTopology(prefix=prefix))
    lab.down()
    site = lab.up()
    try:
        hv = QemuHypervisor(site)
        vm = site.vms[0]
        hv.ensure_running(vm)
        pid = qemu_proc.find_pid(hv.files(vm, vm.chassis))
        hv.close()
        assert pid is not None
    except BaseException:
        lab.down()
        raise
    close_all()
    if lab.down() != []:
        raise LabError("lab down left something")
    assert not qemu_proc.is_our_qemu(pid, hv.files(vm, vm.chassis))


def test_pre_gated_drops_until_the_source_stops_and_leaves_no_gate(
    lab: Lab, hv: QemuHypervisor, clients: SiteClients
) -> None:
    """The TAP gate on the real lab (docs/switchover.md, "The TAP gate"):

    - closed on a plugged TAP (the VM's own, through its chassis' agent), every probe to
      the VM is lost and counted as a drop of the gate; opened, the VM answers again;
    - a ``pre-gated`` migration under probes: the gate closes right after the plug,
      drops the clones sent to the destination, and the source's STOP opens it (not a
      backstop); the VM answers on the destination and no gate is left;
    - a rollback after the gate closed (the destination QEMU killed) opens it again and
      leaves nothing of the destination."""
    site = lab.site()
    vm = site.vm_named("vm1")
    own = clients.chassis[vm.chassis]
    vif = Vif.of(vm)
    own.close_tap_gate(vif)
    try:
        sent, answered = _answering(site, 0.3)
        state = own.tap_gate(vif)
    finally:
        found = own.open_tap_gate(vif)
    assert sent > 20 and answered == 0, (sent, answered)
    assert state.closed and state.dropped > 0, state
    assert found.closed and found.dropped >= state.dropped, found
    assert own.open_tap_gate(vif) == TapGateState(closed=False)  # a no-op now
    _until_answering(site)

    dst = other_chassis(site, "vm1")
    options = MigrationOptions(strategy="port-ready", gate="converge-when-ready",
                               activation="pre-gated")
    with Prober(site, site.clients[0], vm, 2.0) as p:
        p.start()
        report = migrate(site, "vm1", dst, options, hv, clients)
        p.stop()
    lab.save_site(site.with_vm_on("vm1", dst))
    events = {name: (at, detail) for at, name, detail in report.timeline}
    assert (events["plug.done"][0] <= events["tap-gate.closed"][0]
            < events["preactivation.write"][0] < events["tap-gate.opened"][0]), report.timeline
    opened = events["tap-gate.opened"][1]
    assert opened.startswith("source STOP; ") and "ms after the source's STOP" in opened
    assert int(opened.rsplit("dropped ", 1)[1].split()[0]) > 0, opened  # the clones
    assert not clients.chassis[dst].tap_gate(vif).closed
    sent, answered = _answering(lab.site())
    assert sent > 20 and answered == sent

    site = lab.site()  # back, with a rollback after the gate closed
    home = other_chassis(site, "vm1")
    names: list[str] = []
    killer = _kill_destination_later(hv, site, home, "preactivated", 0.0)
    with pytest.raises(MigrationAborted) as err:
        migrate(site, "vm1", home, options, hv, clients,
                observers=[names.append, killer])
    assert err.value.step == "finish-copy", err.value
    assert names.index("tap-gate.closed") < names.index("preactivated"), names
    assert "tap-gate.opened" in names[names.index("failed"):], names
    assert not clients.chassis[dst].tap_gate(vif).closed
    _assert_source_kept(lab, hv, clients, home)
