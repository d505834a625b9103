"""Where each guest process of a site keeps its files, and which of them run.

The emulated hypervisor, the prober client and the lab's ``status`` must agree on one
naming scheme - ``{guest_dir}/{vm}@{chassis}.pid`` for a VM's guest,
``{guest_dir}/{client}.probe.pid`` for a client's prober - so it lives here, once. Reading
the inventory touches only the filesystem and /proc (no request to any guest, nothing
changed), so ``lab status`` stays cheap and can run while a migration drives the guests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cutover.errors import InputError
from cutover.guest.process import Liveness, liveness
from cutover.guest.runtime import read_pidfile
from cutover.site import Site

EMULATOR_MODULE = "cutover.guest.emulator"
PROBER_MODULE = "cutover.probe.prober"


def guest_files(guest_dir: str | Path, vm: str, chassis: str) -> tuple[Path, Path]:
    """(control socket, pidfile) of the guest of ``vm`` on ``chassis``."""
    base = Path(guest_dir)
    return base / f"{vm}@{chassis}.sock", base / f"{vm}@{chassis}.pid"


def prober_files(guest_dir: str | Path, client: str) -> tuple[Path, Path]:
    """(control socket, pidfile) of the prober of client guest ``client``."""
    base = Path(guest_dir)
    return base / f"{client}.probe.sock", base / f"{client}.probe.pid"


@dataclass(frozen=True)
class GuestRecord:
    """One guest process as the filesystem and /proc show it."""

    name: str
    """VM or client name."""
    chassis: str
    role: str
    """``vm`` (the VM's guest on its chassis), ``client`` (a client's prober) or ``stray``
    (a guest of a VM on a chassis the site does not place it on, e.g. a leftover incoming
    guest)."""
    state: Liveness
    pid: int | None

    @property
    def degrades(self) -> bool:
        """A VM without a running guest, a stray guest, or a prober that died: not healthy.
        A client's prober that is simply not started is normal (it runs only to measure)."""
        if self.role == "vm":
            return self.state != "running"
        if self.role == "stray":
            return self.state == "running"
        return self.state == "dead"

    def describe(self) -> str:
        what = "prober " if self.role == "client" else ""
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        note = {
            "dead": " - pidfile left, no process: killed or crashed",
            "missing": " (it runs only while measuring)" if self.role == "client"
            else " - no guest process",
        }.get(self.state, "")
        stray = ", stray: the site does not place it here" if self.role == "stray" else ""
        return f"{self.name}@{self.chassis} {what}{self.state}{pid}{note}{stray}"


def site_guests(site: Site) -> list[GuestRecord]:
    """Every VM's guest on its chassis and every client's prober, then any other guest of a
    site VM that has a pidfile (running or dead) on another chassis."""
    if not site.guest_dir:
        return []
    records: list[GuestRecord] = []
    for vm in site.vms:
        state, pid = _vm_liveness(site, vm.name, vm.chassis)
        records.append(GuestRecord(vm.name, vm.chassis, "vm", state, pid))
    for client in site.clients:
        state, pid = liveness(PROBER_MODULE, prober_files(site.guest_dir, client.name)[1])
        records.append(GuestRecord(client.name, client.chassis, "client", state, pid))
    for vm in site.vms:
        for ch in site.chassis:
            if ch.name == vm.chassis:
                continue
            state, pid = _vm_liveness(site, vm.name, ch.name)
            if state != "missing":
                records.append(GuestRecord(vm.name, ch.name, "stray", state, pid))
    return records


def _vm_liveness(site: Site, vm: str, chassis: str) -> tuple[Liveness, int | None]:
    """The VM's guest on ``chassis`` by the kind of guest the site runs (``extra["guest"]``):
    an emulator, a QEMU over QMP, or a QEMU that libvirt started."""
    kind = site.extra.get("guest", "emulated")
    if kind == "qemu":
        from cutover.guest.qemu_proc import QemuFiles
        from cutover.guest.qemu_proc import liveness as qemu_liveness

        return qemu_liveness(QemuFiles(Path(site.guest_dir), vm, chassis))
    if kind == "libvirt":
        pidfile = Path(site.guest_dir) / f"cutover.guest.libvirt-{vm}@{chassis}.pid"
        pid = read_pidfile(pidfile)
        if pid is None:
            return "missing", None
        try:
            alive = b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            alive = False
        return ("running" if alive else "dead"), pid
    return liveness(EMULATOR_MODULE, guest_files(site.guest_dir, vm, chassis)[1])


def guests_of(site_path: Path) -> tuple[GuestRecord, ...]:
    """:func:`site_guests` of the site described at ``site_path``; none if it is unreadable
    (whoever loads the site for real reports why)."""
    try:
        return tuple(site_guests(Site.load(site_path)))
    except InputError:
        return ()
