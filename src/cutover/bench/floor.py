"""The floor: the same QEMU migration with no OVN at all, measured in the same bench.

A blackout on OVN is only interesting above what QEMU and this machine cost anyway
(the stop-and-copy, the RESUME, the TAP queues, a learning switch re-learning the MAC).
So ``bench --floor`` builds a plain Linux network with the lab's names::

    P-fa: br0 -- VM TAP (source)     P-fb: br0 -- VM TAP (destination, pre-attached)
       \\-- veth --+                      \\-- veth --+
                  P-fu: br0 (hub) --------------------+-- veth -- P-fc: br0 -- client TAP

and migrates the same VM (same image, RAM, bandwidth) between its two pre-attached TAPs
with the same prober on the client TAP, once per bench round after the strategies
(alternating direction), so machine noise hits it like them. Its runs join the bench
result as strategy ``floor``; the report subtracts their median.
Every name carries the lab prefix and every QEMU's files live under the lab's guest dir,
so ``lab down`` removes what a crash might leave; a normal run removes all of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from cutover.bench.preconditions import (
    BASELINE_STEADY,
    BASELINE_TIMEOUT_S,
    check_baseline,
    unmeasurable,
)
from cutover.bench.results import BenchResult, RunResult, TimelineEvent
from cutover.bench.runner import SETTLE_S, WARMUP_S, BenchPlan, guest_figures
from cutover.errors import CutoverError, LabBuildError
from cutover.guest.base import Hypervisor
from cutover.guest.select import GuestOptions, guest_driver
from cutover.probe.analysis import summarize
from cutover.probe.client import Prober
from cutover.site import ChassisEndpoint, Site, VmSpec

STRATEGY = "floor"
SIDES = ("a", "b", "c")
"""Source, destination, client."""


class FloorNet:
    """The Linux-bridge network of the floor; a context manager that removes it."""

    def __init__(self, site: Site) -> None:
        self.lab = site
        self.ns = {x: f"{site.name}-f{x}" for x in ("u", *SIDES)}  # the hub first

    def site(self) -> Site:
        """A Site over the floor network: chassis ``fa``/``fb``/``fc``, no OVN remotes."""
        vm, client = self.lab.vms[0], self.lab.clients[0]
        chassis = tuple(ChassisEndpoint(name=f"f{x}", ovs_remote="none", netns=self.ns[x],
                                        encap_ip=_address(x))
                        for x in SIDES)
        return Site(
            name=self.lab.name, nb_remote="none", sb_remote="none", chassis=chassis,
            vms=(dataclasses.replace(vm, chassis="fa"),),
            clients=(dataclasses.replace(client, chassis="fc"),),
            guest_dir=str(Path(self.lab.guest_dir) / "floor"),
        )

    def __enter__(self) -> FloorNet:
        self.remove()  # a crashed predecessor's
        try:
            self._build()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _build(self) -> None:
        vm, client = self.lab.vms[0], self.lab.clients[0]
        for x, ns in self.ns.items():
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                  "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            _ip("-n", ns, "link", "add", "br0", "type", "bridge", "stp_state", "0",
                "forward_delay", "0")
            _ip("-n", ns, "link", "set", "br0", "up")
            if x != "u":
                _ip("-n", ns, "link", "add", "fv", "type", "veth", "peer", "name", f"fu{x}",
                    "netns", self.ns["u"])
                for dev, where in (("fv", ns), (f"fu{x}", self.ns["u"])):
                    _ip("-n", where, "link", "set", dev, "master", "br0", "up")
        for x in SIDES:  # libvirt migrates over TCP between the sides' own addresses
            _ip("-n", self.ns[x], "addr", "add", f"{_address(x)}/24", "dev", "br0")
        for x, tap in (("a", vm.tap), ("b", vm.tap), ("c", client.tap)):
            _ip("-n", self.ns[x], "tuntap", "add", "dev", tap, "mode", "tap")
            _ip("-n", self.ns[x], "link", "set", tap, "master", "br0", "up")
        for x in SIDES:
            _wait_forwarding(self.ns[x], "fv")
            _wait_forwarding(self.ns["u"], f"fu{x}")

    def remove(self) -> None:
        """Delete the namespaces (their devices go with them). QEMUs are stopped first by
        the caller; a namespace that cannot be deleted is reported."""
        left = [ns for ns in self.ns.values() if ns in _netns_list() and
                subprocess.run(["ip", "netns", "del", ns], capture_output=True).returncode]
        if left:
            raise LabBuildError(f"floor namespaces {left} could not be deleted; "
                                "run 'cutover lab down'")


class Floor:
    """The floor's network, driver and booted VM for a whole bench; :meth:`run` measures
    one floor migration. The bench calls it once per round, after the strategies, so a
    noisy neighbour (2 shared cores) hurts the floor and the strategies alike."""

    def __init__(self, site: Site, plan: BenchPlan, guest: GuestOptions,
                 progress: Callable[[str], None] = lambda _m: None) -> None:
        self.net = FloorNet(site)
        self.site = self.net.site()
        self.plan = plan
        self.guest = guest
        self.progress = progress
        self.vm = self.site.vms[0]
        self._stack = contextlib.ExitStack()
        self._hv: Hypervisor | None = None

    def __enter__(self) -> Floor:
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.net)
            self._hv = stack.enter_context(guest_driver(self.site, self.guest, self.progress))
            stack.callback(self._stop_guests)
            self.progress("floor: booting the VM on a plain Linux bridge")
            self._hv.ensure_running(self.vm)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def run(self, index: int) -> RunResult:
        """One measured floor migration (to the other side of the bridge)."""
        assert self._hv is not None, "use Floor as a context manager"
        self.progress(f"floor run {index + 1}/{self.plan.runs}")
        run, self.vm = _run_once(self.site, self.vm, self.site.clients[0], self.plan, index,
                                 self._hv)
        return run

    def _stop_guests(self) -> None:
        assert self._hv is not None
        for ch in self.site.chassis:
            self._hv.stop(self.vm, ch.name)
        if self.guest.kind == "libvirt":  # the floor's own daemons, before their netns goes
            from cutover.guest.libvirt_daemon import LibvirtDaemon

            for ch in self.site.chassis:
                LibvirtDaemon(self.site, ch.name).stop()


def measure_floor(result: BenchResult, site: Site, plan: BenchPlan, guest: GuestOptions,
                  progress: Callable[[str], None] = lambda _m: None) -> BenchResult:
    """``result`` plus ``plan.runs`` floor runs (strategy ``floor``) measured now."""
    with Floor(site, plan, guest, progress) as floor:
        runs = [floor.run(i) for i in range(plan.runs)]
    return dataclasses.replace(result, runs=[*result.runs, *runs])


def _run_once(fsite: Site, vm: VmSpec, client: VmSpec, plan: BenchPlan, index: int,
              hv: Hypervisor) -> tuple[RunResult, VmSpec]:
    """One measured migration to the other side; returns the run and the VM as it is now.

    Measured exactly like a strategy's run (same prober, warm-up, baseline check, settle
    and analysis), with the hypervisor steps called directly: there is no network to
    prepare."""
    dst = fsite.chassis_named("fb" if vm.chassis == "fa" else "fa")
    error: str | None = None
    steady_from: int | None = None
    marks: list[tuple[float, str]] = []
    moved = vm
    with Prober(fsite, client, vm, plan.probe_interval_ms) as prober:
        prober.start()
        time.sleep(WARMUP_S)
        t0 = time.time() * 1000.0
        try:
            steady_from, status = prober.wait_steady(BASELINE_STEADY, BASELINE_TIMEOUT_S)
            check_baseline(steady_from, status, vm, client, BASELINE_TIMEOUT_S)
            hv.prepare_destination(vm, dst)
            marks.append((time.time() * 1000.0, "incoming.started"))
            hv.copy_memory(vm, dst, plan.copy_ms)
            marks.append((time.time() * 1000.0, "copy.done"))
            marks.append((hv.pause_source(vm, plan.pause_ms), "source.paused"))
            marks.append((hv.switchover(vm, dst), "switchover"))
            hv.finish_source(vm)
            moved = dataclasses.replace(vm, chassis=dst.name)
        except CutoverError as e:
            error = f"{type(e).__name__}: {e}"
            if marks:
                try:
                    hv.abort(vm, dst)
                except CutoverError as undo:  # recorded; the next run will find out
                    error += f"; rollback: {undo}"
        time.sleep(SETTLE_S)
        samples = [p for p in prober.stop() if p[0] >= (steady_from or 0)]
        duplicates = prober.duplicates
    summary = summarize(samples, plan.probe_interval_ms, duplicates)
    if error is None and summary.blackout_open:
        error = str(unmeasurable(summary, vm, client))
    figures = guest_figures(hv, vm) if moved is not vm else {}
    timeline = [TimelineEvent(round(t - t0, 3), n, dst.name) for t, n in marks]
    run = RunResult(
        strategy=STRATEGY, guest=plan.guest, stall="none", activation="none", load="L0",
        vm=vm.name, src=vm.chassis, dst=dst.name, run_index=index,
        probe_interval_ms=plan.probe_interval_ms, probes_sent=summary.probes_sent,
        probes_lost=summary.probes_lost, blackout_ms=round(summary.blackout_ms, 3),
        loss_outage_ms=round(summary.loss_outage_ms, 3),
        migration_ms=round(marks[-1][0] - t0, 3) if moved is not vm else 0.0,
        ready_wait_ms=0.0,
        max_rtt_ms=None if summary.max_rtt_ms is None else round(summary.max_rtt_ms, 3),
        duplicates=summary.duplicates, timeline=timeline, error=error,
        extra={
            "silences": [[round(w.start_ms - t0, 3), round(w.end_ms - t0, 3)]
                         for w in summary.silences],
            "loss_runs": [[round(r.first_sent_ms - t0, 3), round(r.last_sent_ms - t0, 3),
                           r.lost] for r in summary.loss_runs],
            "network": "Linux bridge (no OVN)",
            **{k: v for k, v in figures.items() if not k.endswith("_at_ms")},
        },
    )
    return run, moved


def _address(side: str) -> str:
    """Each side's own address on its bridge (TEST-NET-2; only inside these namespaces)."""
    return f"198.51.100.{SIDES.index(side) + 1}"


def _netns_list() -> list[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True).stdout
    return [n["name"] for n in json.loads(out or "[]")]


def _wait_forwarding(ns: str, dev: str, timeout_s: float = 5.0) -> None:
    """Bridge ports forward only after linkwatch saw the carrier (up to ~1 s)."""
    deadline = time.monotonic() + timeout_s
    state = "?"
    while time.monotonic() < deadline:
        out = _run(["bridge", "-n", ns, "-j", "link", "show", "dev", dev])
        state = json.loads(out)[0]["state"] if out.strip() else "absent"
        if state == "forwarding":
            return
        time.sleep(0.02)
    raise LabBuildError(f"floor bridge port {dev} in {ns} still {state} after {timeout_s} s")


def _ip(*args: str) -> None:
    _run(["ip", *args])


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise LabBuildError(f"floor network: '{' '.join(argv)}' failed: {done.stderr.strip()}")
    return done.stdout
