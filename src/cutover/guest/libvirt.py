"""`Hypervisor` implemented through libvirt, as Nova drives a compute node.

One libvirt daemon per chassis (:mod:`cutover.guest.libvirt_daemon`); the domain is the
XML Nova renders for a pre-created TAP (``<interface type='ethernet'>`` with ``<target
dev='tapX' managed='no'/>``, MAC, MTU, virtio) plus the cached guest image; live
migration goes through libvirt's API (``virDomainMigrate3``, the official
``libvirt-python`` binding), the stream over the chassis' underlay addresses.

Step mapping, and why it differs from the QMP driver: libvirt drives
``pause-before-switchover`` itself and a libvirt client cannot hold that state, so
``copy_memory`` runs the whole migration (pre-copy, stop-and-copy, switchover) and
returns when the VM runs on the destination. That is still correct for every strategy
but ``legacy``, because readiness is awaited before ``copy_memory``. ``pause_source``
and ``switchover`` then report the source's STOP and the destination's RESUME from the
QMP events libvirt passes on (``libvirt_qemu.qemuMonitorEventRegister``, with QEMU's own
timestamps). If the destination TAP does not exist yet (``legacy``), the destination
XML uses a libvirt-managed TAP, as before os-vif's ``create_tap``.

Rollback: ``abortJob`` on the source, destroy the destination domain, resume the source.
Figures: libvirt's completed job info of the destination (``time_elapsed``, ``downtime``,
``memory_processed``) plus the QMP timestamps.
"""

from __future__ import annotations

import contextlib
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

from cutover.chassis.base import DEFAULT_MTU, Vif, vm_uuid
from cutover.compute.libvirt_xml import interface_element
from cutover.errors import GuestError, InvalidMigration, WaitTimeout
from cutover.guest import qemu_proc
from cutover.guest.base import GuestState
from cutover.guest.image import ensure_image
from cutover.guest.initramfs import READY_MARK
from cutover.guest.libvirt_daemon import LibvirtDaemon
from cutover.site import ChassisEndpoint, Site, VmSpec

_loop_lock = threading.Lock()
_loop_started = False


def _start_event_loop() -> None:
    """libvirt delivers events only with an event loop running: one daemon thread."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        # errors reach us as exceptions; libvirt's default handler would also print them
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


def domain_name(site: Site, vm: VmSpec) -> str:
    """``cutover.guest.<lab>-<vm>``: QEMU's ``-name guest=`` then carries the marker by
    which ``lab down`` stops a QEMU that outlived its libvirtd."""
    return f"cutover.guest.{site.name}-{vm.name}"


def domain_xml(vm: VmSpec, name: str, kernel: Path, initrd: Path, ram_mb: int,
               serial: Path, managed_tap: bool = False, guest_offloads: bool = False) -> str:
    """The domain of ``vm``: TCG, the cached kernel/initramfs, one NIC on its TAP; the NIC
    offers the guest no receive offloads unless ``guest_offloads`` (libvirt's
    ``<driver><guest csum='off' .../>``, the same as the QEMU driver's NIC: see
    ``qemu_proc.OFFLOADS_ENV``)."""
    dom = ET.Element("domain", type="qemu")
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "uuid").text = vm_uuid(vm.name)  # Nova's instance UUID: same on both ends
    ET.SubElement(dom, "memory", unit="MiB").text = str(ram_mb)
    ET.SubElement(dom, "vcpu").text = "1"
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_, "kernel").text = str(kernel)
    ET.SubElement(os_, "initrd").text = str(initrd)
    ET.SubElement(os_, "cmdline").text = f"console=ttyS0 quiet panic=-1 cutover.ip={vm.ip}"
    ET.SubElement(dom, "cpu", mode="custom", match="exact").append(
        _el("model", "qemu64", fallback="allow"))
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    devices = ET.SubElement(dom, "devices")
    ET.SubElement(devices, "emulator").text = "/usr/bin/" + qemu_proc.QEMU
    iface = interface_element(Vif.of(vm, DEFAULT_MTU), precreated_tap=True)
    if managed_tap:
        target = iface.find("target")
        assert target is not None
        del target.attrib["managed"]
    if not guest_offloads:
        driver = ET.SubElement(iface, "driver")
        ET.SubElement(driver, "guest", {p.removeprefix("guest_"): "off"
                                        for p in qemu_proc.GUEST_OFFLOADS_OFF})
    devices.append(iface)
    serial_el = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial_el, "source", path=str(serial))
    ET.SubElement(serial_el, "target", port="0")
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")


def _el(tag: str, text: str, **attrs: str) -> ET.Element:
    e = ET.Element(tag, dict(attrs))
    e.text = text
    return e


class LibvirtHypervisor:
    """Guests as libvirt domains, one libvirtd per chassis; implements ``Hypervisor``."""

    def __init__(self, site: Site, ram_mb: int = 128, max_bandwidth_mib: float | None = None,
                 boot_timeout_s: float = 90.0, progress: Any = lambda _m: None) -> None:
        self.site = site
        self.ram_mb = ram_mb
        self.max_bandwidth_mib = max_bandwidth_mib
        self.boot_timeout_s = boot_timeout_s
        self.progress = progress
        _start_event_loop()
        self._conns: dict[str, libvirt.virConnect] = {}
        self._events: dict[str, list[tuple[float, str]]] = {}
        self._figures: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # --- Hypervisor ----------------------------------------------------------------

    def ensure_running(self, vm: VmSpec) -> None:
        dom = self._domain(vm, vm.chassis)
        if dom is None:
            self._create(vm, vm.chassis)
            return
        state = dom.state()[0]
        if state == libvirt.VIR_DOMAIN_PAUSED:
            self._call(dom.resume, f"resume {vm.name}")
        elif state != libvirt.VIR_DOMAIN_RUNNING:
            raise GuestError(f"domain {vm.name} on {vm.chassis} is in state {state}; "
                             "'cutover lab down' and up again")

    def prepare_destination(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        """The destination's libvirtd is up and has no domain of that name (libvirt
        starts the incoming QEMU itself inside the migration)."""
        if dst.name == vm.chassis:
            raise InvalidMigration(f"VM {vm.name!r} already runs on {dst.name!r}")
        if self._domain(vm, dst.name) is not None:
            raise GuestError(f"domain {vm.name} already exists on {dst.name}; abort the "
                             "migration or stop it first")

    def attach_destination(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        """Nothing: libvirt opens the TAP when it starts the destination QEMU."""

    def copy_memory(self, vm: VmSpec, dst: ChassisEndpoint, duration_ms: float) -> None:
        """The whole libvirt live migration (see the module docstring for why)."""
        src_dom = self._require(vm, vm.chassis)
        dconn = self._conn(dst.name)
        image = ensure_image(self.progress)
        managed = not qemu_proc.tap_exists(dst.netns, vm.tap)
        params: dict[str, Any] = {
            libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{dst.encap_ip}",
            libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: dst.encap_ip,
            libvirt.VIR_MIGRATE_PARAM_DEST_XML: domain_xml(
                vm, self._name(vm), image.kernel, image.initrd, self.ram_mb,
                self._serial(vm, dst.name), managed_tap=managed,
                guest_offloads=qemu_proc.guest_offloads()),
        }
        if self.max_bandwidth_mib is not None:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(self.max_bandwidth_mib)
        self._events[vm.name] = []
        watches = [self._watch(self._conn(vm.chassis), vm, "STOP", "stop"),
                   self._watch(dconn, vm, "RESUME", "resume")]
        try:
            self._call(lambda: src_dom.migrate3(dconn, params, libvirt.VIR_MIGRATE_LIVE),
                       f"migrate {vm.name} to {dst.name}")
        finally:
            for conn, cb in watches:
                with contextlib.suppress(libvirt.libvirtError):
                    libvirt_qemu.qemuMonitorEventDeregister(conn, cb)
        ddom = self._require(vm, dst.name)
        self._figures[vm.name] = self._job_figures(ddom)

    def pause_source(self, vm: VmSpec, window_ms: float = 0.0) -> float:
        return self._event_time(vm, "stop")

    def switchover(self, vm: VmSpec, dst: ChassisEndpoint) -> float:
        resume = self._event_time(vm, "resume")
        figures = self._figures.setdefault(vm.name, {})
        figures.update(stop_at_ms=self._event_time(vm, "stop"), resume_at_ms=resume,
                       guest_pause_ms=round(resume - self._event_time(vm, "stop"), 3),
                       ram_mb=self.ram_mb, max_bandwidth_mib=self.max_bandwidth_mib)
        self._write_pidfile(vm, dst.name)
        return resume

    def guest_events(self, vm: VmSpec, chassis: str) -> list[dict[str, Any]]:
        return [{"t_ms": t, "event": f"libvirt.{name}", "detail": ""}
                for t, name in self._events.get(vm.name, [])]

    def finish_source(self, vm: VmSpec) -> None:
        """libvirt already removed the (transient) source domain; make sure of it."""
        self.stop(vm, vm.chassis)

    def abort(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        failures: list[str] = []
        src = self._domain(vm, vm.chassis)
        if src is None:
            raise GuestError(f"abort of {vm.name}: no domain on its source {vm.chassis} "
                             "(the migration may have completed); it cannot be undone here")
        with contextlib.suppress(libvirt.libvirtError):
            src.abortJob()
        try:
            self.stop(vm, dst.name)
        except GuestError as e:
            failures.append(f"destination: {e}")
        try:
            if src.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                self._call(src.resume, f"resume {vm.name}")
        except GuestError as e:
            failures.append(f"source: {e}")
        if failures:
            raise GuestError(f"abort of {vm.name!r} incomplete: {'; '.join(failures)}")

    def stop(self, vm: VmSpec, chassis: str) -> None:
        dom = self._domain(vm, chassis)
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
        self._pidfile(vm, chassis).unlink(missing_ok=True)

    def guest_state(self, vm: VmSpec, chassis: str) -> GuestState:
        try:
            dom = self._domain(vm, chassis)
            if dom is None:
                return GuestState("missing", f"no domain {self._name(vm)} on {chassis}")
            state = dom.state()[0]
        except (GuestError, libvirt.libvirtError) as e:
            return GuestState("unknown", str(e))
        names = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
                 libvirt.VIR_DOMAIN_SHUTOFF: "dead", libvirt.VIR_DOMAIN_CRASHED: "dead"}
        return GuestState(names.get(state, "unknown"), f"libvirt domain state {state}")

    # --- beyond the Protocol -------------------------------------------------------

    def last_migration(self, vm: VmSpec) -> dict[str, Any]:
        return dict(self._figures.get(vm.name, {}))

    def status(self, vm: VmSpec, chassis: str) -> str | None:
        dom = self._domain(vm, chassis)
        if dom is None:
            return None
        return "running" if dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING else "not running"

    def close(self) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
        self._conns.clear()

    # --- internals -----------------------------------------------------------------

    def _conn(self, chassis: str) -> libvirt.virConnect:
        if chassis not in self._conns:
            daemon = LibvirtDaemon(self.site, chassis)
            daemon.ensure()
            try:
                self._conns[chassis] = libvirt.open(daemon.uri)
            except libvirt.libvirtError as e:
                raise GuestError(f"cannot connect to libvirtd of {chassis} ({daemon.uri}): "
                                 f"{e}; see {daemon.log}") from e
        return self._conns[chassis]

    def _domain(self, vm: VmSpec, chassis: str) -> libvirt.virDomain | None:
        try:
            return self._conn(chassis).lookupByName(self._name(vm))
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise GuestError(f"libvirtd of {chassis}: looking up {vm.name}: {e}") from e

    def _require(self, vm: VmSpec, chassis: str) -> libvirt.virDomain:
        dom = self._domain(vm, chassis)
        if dom is None:
            raise GuestError(f"no domain {vm.name} on {chassis}")
        return dom

    def _create(self, vm: VmSpec, chassis: str) -> None:
        image = ensure_image(self.progress)
        serial = self._serial(vm, chassis)
        serial.unlink(missing_ok=True)
        xml = domain_xml(vm, self._name(vm), image.kernel, image.initrd, self.ram_mb, serial,
                         guest_offloads=qemu_proc.guest_offloads())
        self.progress(f"booting domain {vm.name} on {chassis} (libvirt, TCG)")
        self._call(lambda: self._conn(chassis).createXML(xml, 0), f"create {vm.name}")
        self._write_pidfile(vm, chassis)
        deadline = time.monotonic() + self.boot_timeout_s
        while READY_MARK not in _read(serial):
            if time.monotonic() > deadline:
                raise WaitTimeout(f"domain {vm.name} on {chassis} to boot",
                                  self.boot_timeout_s, f"console: {_read(serial)[-300:]!r}")
            time.sleep(0.05)

    def _name(self, vm: VmSpec) -> str:
        return domain_name(self.site, vm)

    def _serial(self, vm: VmSpec, chassis: str) -> Path:
        return LibvirtDaemon(self.site, chassis).dir / f"{vm.name}.serial.log"

    def _pidfile(self, vm: VmSpec, chassis: str) -> Path:
        return Path(self.site.guest_dir) / f"cutover.guest.libvirt-{vm.name}@{chassis}.pid"

    def _write_pidfile(self, vm: VmSpec, chassis: str) -> None:
        """Where ``lab down`` finds the QEMU libvirt started (it outlives its libvirtd)."""
        qemu_pid = (LibvirtDaemon(self.site, chassis).dir / "run" / "qemu"
                    / f"{self._name(vm)}.pid")
        with contextlib.suppress(OSError):
            self._pidfile(vm, chassis).write_text(qemu_pid.read_text().strip() + "\n")

    def _watch(self, conn: libvirt.virConnect, vm: VmSpec, event: str,
               name: str) -> tuple[libvirt.virConnect, int]:
        def cb(_c: Any, dom: Any, _ev: str, seconds: int, micros: int, _d: Any,
               _o: Any) -> None:
            if dom is not None and dom.name() == self._name(vm):
                with self._lock:
                    self._events[vm.name].append((seconds * 1000.0 + micros / 1000.0, name))

        return conn, libvirt_qemu.qemuMonitorEventRegister(conn, None, event, cb, None, 0)

    def _event_time(self, vm: VmSpec, name: str, timeout_s: float = 2.0) -> float:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                times = [t for t, n in self._events.get(vm.name, []) if n == name]
            if times:
                return times[-1]
            if time.monotonic() > deadline:
                raise WaitTimeout(f"the {name.upper()} event of {vm.name} from libvirt",
                                  timeout_s, f"events {self._events.get(vm.name)}")
            time.sleep(0.01)

    def _job_figures(self, dom: libvirt.virDomain) -> dict[str, Any]:
        try:
            stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError:
            return {}
        out: dict[str, Any] = {}
        for key, name in (("time_elapsed", "total_ms"), ("downtime", "downtime_ms"),
                          ("setup_time", "setup_ms")):
            if key in stats:
                out[name] = float(stats[key])
        if "memory_processed" in stats:
            out["ram_transferred_mb"] = round(stats["memory_processed"] / 2**20, 3)
        return out

    def _call(self, fn: Any, what: str) -> Any:
        try:
            return fn()
        except libvirt.libvirtError as e:
            raise GuestError(f"libvirt: {what} failed: {e}") from e


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
