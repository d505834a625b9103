"""The guest's initramfs: static busybox, virtio-net modules in dependency order, ``/init``.

Kept apart from :mod:`cutover.guest.image` because this part is pure (bytes in, bytes
out) and unit-tested: module dependency order from ``.modinfo`` and the ``newc`` cpio
archive the kernel unpacks. No ``modules.dep`` exists in an unpacked (not installed)
kernel package, so the order comes from each module's own ``depends=`` string; without
it ``insmod`` of virtio_net fails on its missing symbols.
"""

from __future__ import annotations

import hashlib
import lzma
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from cutover.errors import PrerequisiteError

BUSYBOX = "/bin/busybox"
NET_MODULES = ("virtio_pci", "virtio_net")
"""What the guest needs; their dependencies (virtio_ring, virtio, failover...) follow."""
READY_MARK = "CUTOVER-GUEST-READY"
"""Printed on the serial console once eth0 has its address: the guest answers from now on."""
APPLETS = ("sh", "mount", "insmod", "ip", "sleep", "cat", "echo")
_DEPENDS_RE = re.compile(rb"(?:^|\x00)depends=([A-Za-z0-9_,\-]*)\x00")

INIT = """#!/bin/sh
# cutover guest: load virtio-net, take the IP from the kernel command line (cutover.ip=),
# answer ARP/ICMP with the kernel's own stack. /32 + a default route on eth0: every peer is
# on-link, whatever the subnet.
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m.ko || echo "CUTOVER-GUEST insmod $m failed"; done
ip=""
for a in $(cat /proc/cmdline); do case $a in cutover.ip=*) ip=${a#cutover.ip=};; esac; done
n=0
while [ ! -e /sys/class/net/eth0 ]; do
  sleep 0.05; n=$((n+1)); [ $n -eq 400 ] && echo "CUTOVER-GUEST-FAILED: no eth0"
done
for c in all default; do
  f=/proc/sys/net/ipv6/conf/$c/disable_ipv6; [ -e $f ] && echo 1 > $f
done
# ARP again after 100 ms, not 1 s: the first broadcast to a remote chassis may be dropped
# while OVS resolves the tunnel, and the guest must answer its first prober at once
echo 100 > /proc/sys/net/ipv4/neigh/eth0/retrans_time_ms
echo 100 > /proc/sys/net/ipv4/neigh/default/retrans_time_ms
ip link set lo up; ip link set eth0 up
ip addr add "$ip/32" dev eth0 && ip route add default dev eth0
echo "@READY@ ip=$ip uptime=$(cat /proc/uptime)"
while true; do sleep 3600; done
""".replace("@READY@", READY_MARK)


def recipe_id() -> str:
    """Changes whenever what goes into the initramfs changes: part of the cache check."""
    spec = "\0".join((INIT, *NET_MODULES, *APPLETS))
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def module_depends(ko: bytes) -> list[str]:
    """The ``depends=`` list of a kernel module's ``.modinfo`` (names with ``_``)."""
    m = _DEPENDS_RE.search(ko)
    if m is None or not m.group(1):
        return []
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d]


def load_order(
    wanted: Iterable[str], depends: Callable[[str], list[str]]
) -> list[str]:
    """Dependencies first (depth-first post-order), each module once.

    Raises PrerequisiteError on a dependency cycle (a broken module set).
    """
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise PrerequisiteError(f"module dependency cycle: {' -> '.join((*path, name))}")
        state[name] = "visiting"
        for dep in depends(name):
            visit(dep, (*path, name))
        state[name] = "done"
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order


def index_modules(moddir: Path) -> dict[str, Path]:
    """Module name (``-`` as ``_``) -> its file (``.ko``, ``.ko.xz``) under ``moddir``."""
    found: dict[str, Path] = {}
    for p in moddir.rglob("*.ko*"):
        base = p.name.split(".ko", 1)[0].replace("-", "_")
        found.setdefault(base, p)
    return found


def read_module(path: Path) -> bytes:
    """A module's ELF bytes; xz-compressed ones (Debian 13) are decompressed here, since
    busybox ``insmod`` hands the file to ``init_module`` as it is."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko"):
        return data
    raise PrerequisiteError(f"module {path} has a compression this build cannot read")


def newc_archive(files: Mapping[str, tuple[int, bytes]]) -> bytes:
    """A cpio ``newc`` archive of ``path -> (mode, data)`` (symlinks: data = target).

    Directories must be listed before their contents (``files`` order is kept).
    """
    out = bytearray()

    def pad(n: int) -> None:
        out.extend(b"\0" * ((4 - n % 4) % 4))

    def entry(ino: int, name: str, mode: int, data: bytes) -> None:
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out.extend(header + raw)
        pad(len(header) + len(raw))
        out.extend(data)
        pad(len(data))

    for ino, (name, (mode, data)) in enumerate(files.items(), start=1):
        entry(ino, name, mode, data)
    entry(0, "TRAILER!!!", 0, b"")
    return bytes(out)


def build_initramfs(moddir: Path, busybox: str = BUSYBOX) -> bytes:
    """The uncompressed initramfs for a kernel whose modules are under ``moddir``."""
    mods = index_modules(moddir)
    if not mods:
        raise PrerequisiteError(f"no kernel modules under {moddir}")

    cache: dict[str, bytes] = {}

    def data(name: str) -> bytes:
        if name not in cache:
            if name not in mods:
                raise PrerequisiteError(f"kernel module {name} not found under {moddir}")
            cache[name] = read_module(mods[name])
        return cache[name]

    order = load_order([m for m in NET_MODULES if m in mods], lambda n: module_depends(data(n)))
    if "virtio_net" not in order:
        raise PrerequisiteError(f"virtio_net is not a module under {moddir}")
    files: dict[str, tuple[int, bytes]] = {}
    for d in ("bin", "proc", "sys", "dev", "mods"):
        files[d] = (0o040755, b"")
    files["bin/busybox"] = (0o100755, Path(busybox).read_bytes())
    for applet in APPLETS:
        files[f"bin/{applet}"] = (0o120777, b"busybox")
    files["init"] = (0o100755, INIT.encode())
    files["mods/order"] = (0o100644, (" ".join(order) + "\n").encode())
    for name in order:
        files[f"mods/{name}.ko"] = (0o100644, data(name))
    return newc_archive(files)
