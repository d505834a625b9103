"""QEMU processes of the lab: command line, start, find again, stop - by files, not memory.

Like the emulated guests, a QEMU outlives the CLI call that started it (``lab up`` boots
it, ``migrate`` moves it), so everything about it is in ``site.guest_dir``:
``{vm}@{chassis}.qmp`` (QMP socket), ``.qemu.pid``, ``.serial.log`` (the guest console)
and ``.mig.sock`` (the incoming migration socket: a unix socket path works across
network namespaces, so the stream never leaves this machine's filesystem).

QEMU runs inside the chassis' network namespace (``ip netns exec``: TAP names are per
namespace) and attaches to the TAP by name with ``script=no,downscript=no``, QEMU's form
of libvirt's ``managed='no'``. A signal goes only to the pid in the pidfile, and only
while its command line is a QEMU naming this guest's QMP socket (which lies in the lab
directory), so a recycled pid or another lab's QEMU is never hit. The ``-name`` carries
``cutover.guest`` so that ``lab down`` stops leftovers with the other guest processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cutover.errors import GuestError, PrerequisiteError, WaitTimeout
from cutover.guest.image import GuestImage
from cutover.guest.initramfs import READY_MARK
from cutover.guest.process import Liveness
from cutover.guest.runtime import read_pidfile
from cutover.site import VmSpec

QEMU = "qemu-system-x86_64"
ACCEL_ENV = "CUTOVER_QEMU_ACCEL"
"""``tcg`` (default) or ``kvm``: KVM on this machine kind (nested PVM) cannot boot a stock
kernel (``failed to set MSR 0x10a``), so it is only used where asked for."""

OFFLOADS_ENV = "CUTOVER_QEMU_GUEST_OFFLOADS"
"""``off`` (default) or ``on``: whether the lab VM's virtio-net NIC offers the guest receive
offloads (QEMU's default). With them, the destination QEMU applies the guest's negotiated
offloads to its TAP when it loads the device state at the switchover (``TUNSETOFFLOAD``:
a "feature change" RTM_NEWLINK), and the userspace ovs-vswitchd answers that with a
reconfiguration over every port of br-int - seconds of main-thread time with the 2000
ports of the L1/L2 load, during which it polls no TAP (docs/switchover.md, "L2 load on the
destination"). Off, the TAP's offloads stay as QEMU set them at start, so the switchover
sends no link event. Source and destination must agree (it is part of the device)."""

GUEST_OFFLOADS_OFF = ("guest_csum", "guest_tso4", "guest_tso6", "guest_ecn", "guest_ufo")
"""virtio-net-pci properties (QEMU 7.2) that become the TAP's offload flags."""


@dataclass(frozen=True)
class QemuFiles:
    """Where the QEMU of ``vm`` on ``chassis`` keeps its sockets, pidfile and console."""

    guest_dir: Path
    vm: str
    chassis: str

    def _p(self, suffix: str) -> Path:
        return self.guest_dir / f"{self.vm}@{self.chassis}{suffix}"

    @property
    def qmp(self) -> Path:
        return self._p(".qmp")

    @property
    def pidfile(self) -> Path:
        return self._p(".qemu.pid")

    @property
    def serial(self) -> Path:
        return self._p(".serial.log")

    @property
    def incoming(self) -> Path:
        return self._p(".mig.sock")

    @property
    def label(self) -> str:
        return f"QEMU {self.vm}@{self.chassis}"

    def all(self) -> tuple[Path, ...]:
        return (self.qmp, self.pidfile, self.incoming)


def qemu_argv(image: GuestImage, vm: VmSpec, files: QemuFiles, ram_mb: int,
              accel: str = "tcg", incoming: bool = False,
              guest_offloads: bool = False) -> list[str]:
    """The QEMU command line of a lab guest (the source and destination differ only by
    ``-incoming defer``, as device state must match on both ends). ``guest_offloads``:
    see :data:`OFFLOADS_ENV`."""
    nic = f"virtio-net-pci,netdev=n0,mac={vm.mac}"
    if not guest_offloads:
        nic += "".join(f",{prop}=off" for prop in GUEST_OFFLOADS_OFF)
    argv = [
        *qemu_command(), "-name", f"cutover.guest.qemu:{vm.name}@{files.chassis}",
        "-accel", accel, "-cpu", "max", "-m", str(ram_mb), "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", f"console=ttyS0 quiet panic=-1 cutover.ip={vm.ip}",
        "-netdev", f"tap,id=n0,ifname={vm.tap},script=no,downscript=no",
        "-device", nic,
        "-serial", f"file:{files.serial}",
        "-qmp", f"unix:{files.qmp},server=on,wait=off",
        "-daemonize", "-pidfile", str(files.pidfile),
    ]
    if incoming:
        argv += ["-incoming", "defer"]
    return argv


ROOT_ENV = "CUTOVER_QEMU_ROOT"
"""A Debian root holding ``qemu-system-x86`` (e.g. ``mmdebstrap --variant=apt
--include=qemu-system-x86 trixie DIR``) whose QEMU the lab runs instead of the host's,
started through the root's own loader as the OVN roots are (no chroot): Debian 12 has QEMU
7.2, whose held pre-copy behaves differently from QEMU >= 8.0 (docs/switchover.md). Unset:
the host's ``qemu-system-x86_64``. Every QEMU of a lab (both ends, the floor) must be the
same one: set it for ``lab up`` and every later command."""


def qemu_command() -> list[str]:
    """argv prefix that starts QEMU (see :data:`ROOT_ENV`); PrerequisiteError if the root
    has no QEMU or loader."""
    root = os.environ.get(ROOT_ENV)
    if not root:
        return [QEMU]
    r = Path(root).absolute()  # the lab records this argv: it must not depend on the cwd
    binary, loader = r / "usr/bin" / QEMU, r / "lib64/ld-linux-x86-64.so.2"
    for needed in (binary, loader, r / "usr/share/qemu", r / "usr/share/seabios"):
        if not needed.exists():
            raise PrerequisiteError(f"{ROOT_ENV}={root}: no {needed}; build the root with "
                                    "mmdebstrap --variant=apt --include=qemu-system-x86 "
                                    "SUITE DIR")  # fmt: skip
    libs = ":".join(str(r / d) for d in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"))
    return [str(loader), "--library-path", libs, str(binary),
            "-L", str(r / "usr/share/qemu"), "-L", str(r / "usr/share/seabios")]


def lab_record() -> dict[str, object]:
    """What a lab records at ``lab up`` about the QEMU its guests run (``site.extra``):
    every later QEMU of that lab must be started the same way (:func:`check_lab_record`)."""
    return {"command": qemu_command(), "guest_offloads": guest_offloads()}


def check_lab_record(recorded: object) -> None:
    """PrerequisiteError when this process would start another QEMU, or another NIC, than
    the lab's running guests: the incoming QEMU cannot load their device state (seen: a
    QEMU 10 destination of a QEMU 7.2 source died in the pre-copy, every time). None
    recorded (a lab from before): nothing to check."""
    if not isinstance(recorded, dict):
        return
    now = lab_record()
    for key, env in (("command", ROOT_ENV), ("guest_offloads", OFFLOADS_ENV)):
        if key in recorded and recorded[key] != now[key]:
            was, would = _setting(env, recorded[key]), _setting(env, now[key])
            raise PrerequisiteError(
                f"the lab's QEMU guests were started with {was}, this command has {would}: "
                f"{'unset ' + env if was.endswith(' unset') else 'set ' + was} as for "
                "'cutover lab up' (or rebuild the lab with 'cutover lab down')"
            )


def _setting(env: str, value: object) -> str:
    """The environment setting that gives ``value`` of :func:`lab_record` (what a user
    sets, not the argv it becomes)."""
    if env == OFFLOADS_ENV:
        return f"{env}={'on' if value else 'off'}"
    if value == [QEMU]:
        return f"{env} unset"
    if isinstance(value, list) and len(value) > 3 and str(value[3]).endswith(f"/usr/bin/{QEMU}"):
        return f"{env}={Path(str(value[3])).parents[2]}"
    return f"{env} giving {value!r}"


def guest_offloads() -> bool:
    """:data:`OFFLOADS_ENV` read and checked (default off)."""
    value = os.environ.get(OFFLOADS_ENV, "off")
    if value not in ("on", "off"):
        raise PrerequisiteError(f"{OFFLOADS_ENV}={value!r}: use on or off")
    return value == "on"


def tap_exists(netns: str | None, name: str) -> bool:
    """Whether device ``name`` exists in ``netns`` (None: this process's namespace)."""
    argv = ["ip", *(["-n", netns] if netns else []), "link", "show", "dev", name]
    return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0


def link_up(netns: str | None, name: str) -> None:
    """Bring up a TAP that QEMU created itself (libvirt's managed TAP does the same)."""
    argv = ["ip", *(["-n", netns] if netns else []), "link", "set", "dev", name, "up"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise GuestError(f"cannot bring up TAP {name} in {netns}: {done.stderr.strip()}")


def accel() -> str:
    value = os.environ.get(ACCEL_ENV, "tcg")
    if value not in ("tcg", "kvm"):
        raise PrerequisiteError(f"{ACCEL_ENV}={value!r}: use tcg or kvm")
    return value


def is_our_qemu(pid: int, files: QemuFiles) -> bool:
    """True while ``pid`` is a live QEMU serving ``files.qmp`` (not a zombie)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and QEMU.encode() in cmdline and str(files.qmp).encode() in cmdline


def liveness(files: QemuFiles) -> tuple[Liveness, int | None]:
    """``running``, ``dead`` (pidfile left, process gone: killed or crashed) or ``missing``,
    from the pidfile and /proc alone (``lab status`` may call it during a migration)."""
    pid = read_pidfile(files.pidfile)
    if pid is None:
        return "missing", None
    return ("running" if is_our_qemu(pid, files) else "dead"), pid


def find_pid(files: QemuFiles) -> int | None:
    pid = read_pidfile(files.pidfile)
    return pid if pid is not None and is_our_qemu(pid, files) else None


def spawn(argv: list[str], files: QemuFiles, netns: str | None, timeout_s: float = 30.0) -> int:
    """Start QEMU daemonized (in ``netns``); returns its pid once the QMP socket exists."""
    files.guest_dir.mkdir(parents=True, exist_ok=True)
    for p in (*files.all(), files.serial):
        p.unlink(missing_ok=True)
    cmd = ["ip", "netns", "exec", netns, *argv] if netns else argv
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise PrerequisiteError(f"{QEMU} is missing: run scripts/install-debs") from e
    except subprocess.TimeoutExpired as e:
        raise GuestError(f"{files.label} did not daemonize within {timeout_s:.0f} s") from e
    if done.returncode != 0:
        raise GuestError(f"{files.label} failed to start ({done.returncode}): "
                         f"{done.stderr.strip()[-500:]}")
    pid = find_pid(files)
    if pid is None or not files.qmp.exists():
        raise GuestError(f"{files.label} started but left no live pid in {files.pidfile} "
                         f"or no QMP socket {files.qmp}: {done.stderr.strip()[-300:]}")
    return pid


def wait_booted(files: QemuFiles, pid: int, timeout_s: float) -> float:
    """Wait for the guest's ready line on the serial console; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        text = _read(files.serial)
        if READY_MARK in text:
            return time.monotonic() - t0
        if not is_our_qemu(pid, files):
            raise GuestError(f"{files.label} (pid {pid}) exited while booting; console:\n"
                             f"{text[-1000:]}")
        if time.monotonic() - t0 > timeout_s:
            raise WaitTimeout(f"{files.label} to boot ({READY_MARK} on {files.serial})",
                              timeout_s, f"console ends with {text[-300:]!r}")
        time.sleep(0.05)


def kill(files: QemuFiles, timeout_s: float = 5.0) -> None:
    """SIGTERM then SIGKILL the QEMU of ``files`` (if it is ours), then remove its files."""
    pid = find_pid(files)
    if pid is not None:
        for sig, wait in ((signal.SIGTERM, timeout_s * 0.6), (signal.SIGKILL, timeout_s * 0.4)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if wait_dead(pid, files, wait):
                break
        else:
            raise GuestError(f"{files.label} (pid {pid}) survived SIGKILL; "
                             f"check it with 'ps -p {pid}'")
    for p in files.all():
        p.unlink(missing_ok=True)


def wait_dead(pid: int, files: QemuFiles, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_our_qemu(pid, files):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def read_text(path: Path) -> str:
    """A console log's text, or "" if it cannot be read."""
    return _read(path)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
