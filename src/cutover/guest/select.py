"""Which hypervisor driver runs a site's guests, and the options that go with it.

A lab is booted with one kind of guest (``lab up --guest``) and every later command must
drive the same kind, since a TAP is held by exactly one process: the kind and the guest
RAM are recorded in the site (``extra["guest"]``, ``extra["guest_ram_mb"]``), and
:func:`check_matches` refuses a request for another kind before anything changes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cutover import bounds
from cutover.errors import InputError
from cutover.guest import qemu_proc
from cutover.guest.base import Hypervisor
from cutover.site import Site

GUESTS = ("emulated", "qemu", "libvirt")


@dataclass(frozen=True)
class GuestOptions:
    kind: str = "emulated"
    ram_mb: int = 128
    """QEMU guest RAM in MiB (the pre-copy moves all of it)."""
    max_bandwidth_mib: float | None = None
    """QEMU ``max-bandwidth`` in MiB/s (None: QEMU's default, 128 MiB/s in 7.2)."""

    def checked(self) -> GuestOptions:
        """The same options; InputError (one line, nothing built yet) when one is wrong."""
        if self.kind not in GUESTS:
            raise InputError(f"guest {self.kind!r}: choose one of {', '.join(GUESTS)}")
        bounds.check(bounds.GUEST_RAM_MB, self.ram_mb)
        if self.max_bandwidth_mib is not None:
            bounds.check(bounds.MAX_BANDWIDTH_MIB, self.max_bandwidth_mib)
            if self.kind == "emulated":  # it would be accepted and silently do nothing
                raise InputError(
                    f"--max-bandwidth {self.max_bandwidth_mib:g} caps a QEMU migration, but "
                    "the guests are emulated: drop it (it applies to --guest qemu or libvirt)"
                )
        root = os.environ.get(qemu_proc.ROOT_ENV)
        if self.kind == "libvirt" and root:  # it would be recorded, and named by a bench
            raise InputError(
                f"{qemu_proc.ROOT_ENV}={root} runs that root's QEMU for --guest qemu, but "
                f"libvirtd starts its own emulator (/usr/bin/{qemu_proc.QEMU}): unset "
                f"{qemu_proc.ROOT_ENV}, or use --guest qemu"
            )
        return self

    def record(self) -> dict[str, object]:
        """What the site remembers about its guests."""
        return {"guest": self.kind, "guest_ram_mb": self.ram_mb}


def site_guest(site: Site) -> GuestOptions:
    """The guest kind and RAM the site's guests were booted with."""
    return GuestOptions(str(site.extra.get("guest", "emulated")),
                        int(site.extra.get("guest_ram_mb", 128)))


def check_matches(site: Site, wanted: GuestOptions) -> None:
    have = site_guest(site)
    real = ("qemu", "libvirt")
    if have.kind != wanted.kind or (wanted.kind in real and have.ram_mb != wanted.ram_mb):
        raise InputError(
            f"lab {site.name} runs {have.kind} guests"
            + (f" with {have.ram_mb} MiB" if have.kind in real else "")
            + f", not {wanted.kind}" + (f" with {wanted.ram_mb} MiB" if wanted.kind in real
                                          else "")
            + "; run 'cutover lab down' first or ask for the lab's guests"
        )


@contextlib.contextmanager
def guest_driver(
    site: Site, opts: GuestOptions, progress: Callable[[str], None] = lambda _m: None
) -> Iterator[Hypervisor]:
    """:func:`hypervisor_for`, closed at the end (QMP connections and their event loop;
    the guests themselves keep running)."""
    hv = hypervisor_for(site, opts, progress)
    try:
        yield hv
    finally:
        close = getattr(hv, "close", None)
        if callable(close):
            close()


def hypervisor_for(
    site: Site, opts: GuestOptions, progress: Callable[[str], None] = lambda _m: None
) -> Hypervisor:
    if opts.kind == "libvirt":
        from cutover.guest.libvirt import LibvirtHypervisor

        return LibvirtHypervisor(site, ram_mb=opts.ram_mb,
                                 max_bandwidth_mib=opts.max_bandwidth_mib, progress=progress)
    if opts.kind == "qemu":
        from cutover.guest.qemu import QemuHypervisor

        return QemuHypervisor(site, ram_mb=opts.ram_mb,
                              max_bandwidth_mib=opts.max_bandwidth_mib, progress=progress)
    from cutover.guest.emulated import EmulatedHypervisor

    return EmulatedHypervisor(site)
