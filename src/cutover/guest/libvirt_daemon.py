"""One libvirt daemon per chassis, inside the chassis' network namespace.

On a compute node Nova talks to the host's own libvirtd; in the lab every chassis is a
namespace on one machine, so each gets its own ``libvirtd`` in a private mount namespace
in which ``/etc/libvirt``, ``/run/libvirt``, ``/var/lib/libvirt``, ``/var/log/libvirt``
and ``/var/cache/libvirt`` are bind-mounted from
``{guest_dir}/cutover.guest.libvirt/{chassis}/`` (the path names the lab and carries the
``cutover.guest`` marker, so ``lab down`` stops a leftover daemon), with a distinct
``host_uuid`` (libvirt refuses to migrate to "itself"). QEMU then runs in the daemon's
network namespace, where the chassis' TAPs are. The empty mount points are created in
the root file system when missing (and are left: they are harmless).

Errors: :class:`~cutover.errors.GuestError` with the daemon's log tail,
:class:`~cutover.errors.PrerequisiteError` when libvirt is not installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from cutover.errors import GuestError, PrerequisiteError, WaitTimeout
from cutover.guest.runtime import read_pidfile
from cutover.site import Site

MOUNTS = ("etc", "/etc/libvirt"), ("run", "/run/libvirt"), ("lib", "/var/lib/libvirt"), \
    ("log", "/var/log/libvirt"), ("cache", "/var/cache/libvirt")
LIBVIRTD = "libvirtd"

QEMU_CONF = """# cutover lab: QEMU as root, no cgroups/namespaces/security driver (the lab's
# namespaces are the isolation); migration listens on the chassis' underlay address.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
namespaces = [ ]
migration_address = "{address}"
"""
LIBVIRTD_CONF = """host_uuid = "{uuid}"
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


class LibvirtDaemon:
    """The libvirtd of one chassis: paths, start (idempotent), URI, stop."""

    def __init__(self, site: Site, chassis: str) -> None:
        self.site = site
        self.chassis = site.chassis_named(chassis)
        self.dir = Path(site.guest_dir) / "cutover.guest.libvirt" / chassis

    @property
    def pidfile(self) -> Path:
        """In the guest dir itself, named with the ``cutover.guest`` marker: ``lab down``
        stops every process whose pidfile lies there and whose command line has it."""
        return Path(self.site.guest_dir) / f"cutover.guest.libvirtd@{self.chassis.name}.pid"

    @property
    def socket(self) -> Path:
        return self.dir / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def log(self) -> Path:
        return self.dir / "log" / "libvirtd.log"

    def pid(self) -> int | None:
        pid = read_pidfile(self.pidfile)
        if pid is None:
            return None
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if LIBVIRTD.encode() in line and str(self.pidfile).encode() in line else None

    def ensure(self, timeout_s: float = 20.0) -> None:
        """Start the daemon unless it runs; wait until its socket accepts."""
        if self.pid() is not None and self.socket.exists():
            return
        if shutil.which(LIBVIRTD) is None:
            raise PrerequisiteError("libvirtd is missing: run scripts/install-debs "
                                    "(libvirt-daemon libvirt-daemon-driver-qemu)")
        self._prepare()
        for _, target in MOUNTS:
            Path(target).mkdir(parents=True, exist_ok=True)
        binds = " && ".join(f"mount --bind {self.dir / src} {dst}" for src, dst in MOUNTS)
        script = f"{binds} && exec {LIBVIRTD} -d -p {self.pidfile} -f /etc/libvirt/libvirtd.conf"
        cmd = ["unshare", "-m", "--propagation", "slave", "sh", "-c", script]
        if self.chassis.netns:
            cmd = ["ip", "netns", "exec", self.chassis.netns, *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise GuestError(f"libvirtd of {self.chassis.name} failed to start: "
                             f"{done.stderr.strip()[-400:]}")
        deadline = time.monotonic() + timeout_s
        while not (self.socket.exists() and self.pid() is not None):
            if time.monotonic() > deadline:
                raise WaitTimeout(f"libvirtd of {self.chassis.name} to serve {self.socket}",
                                  timeout_s, f"pid {self.pid()}, log: {self._tail()}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 5.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout_s / 2
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.pid() is None:
                return
        raise GuestError(f"libvirtd of {self.chassis.name} (pid {pid}) survived SIGKILL")

    def _prepare(self) -> None:
        for src, _ in MOUNTS:
            (self.dir / src).mkdir(parents=True, exist_ok=True)
        for sub in ("lib/qemu", "log/qemu", "cache/qemu"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        host_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"cutover:{self.site.name}:{self.chassis.name}")
        (self.dir / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF.format(uuid=host_uuid))
        (self.dir / "etc" / "qemu.conf").write_text(
            QEMU_CONF.format(address=self.chassis.encap_ip or "127.0.0.1"))

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-400:]
        except OSError:
            return "(no log)"
