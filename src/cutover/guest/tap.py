"""Holding a TAP device the way QEMU does, without ever creating one.

In a real cloud the TAP is created by the plugger (os-vif / libvirt) and QEMU only
attaches to it. ``TUNSETIFF`` however silently *creates* a missing device, which
would hide exactly the ordering bugs this project is about (a destination guest that
"works" although nobody plugged its port). So :func:`open_tap` refuses to open a
device that is not already there, and double-checks afterwards that it attached to
the device it saw rather than to a fresh one.

:class:`TapPort` is the part of the frame loop the emulator and the prober share:
drain the non-blocking fd, send frames, answer ARP for the guest's own address.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

from cutover.errors import GuestError
from cutover.guest import frames

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
MAX_FRAME = 65536
SYS_NET = Path("/sys/class/net")


def tap_exists(name: str) -> bool:
    """True if a network device called ``name`` exists in this process's namespace."""
    return (SYS_NET / name).exists()


def _ifindex(name: str) -> int | None:
    try:
        return int((SYS_NET / name / "ifindex").read_text())
    except (OSError, ValueError):
        return None


def open_tap(name: str) -> int:
    """Attach to the existing TAP ``name``; return a non-blocking fd (no packet info header).

    Raises :class:`GuestError` if the device is missing, is not a TAP, or is held by
    another process - never creates a device.
    """
    if not name or len(name) >= IFNAMSIZ or "/" in name:
        raise GuestError(f"invalid TAP name {name!r} (1-15 characters, no '/')")
    before = _ifindex(name)
    if before is None:
        raise GuestError(
            f"TAP {name!r} does not exist in this network namespace; it must be created "
            f"by the plugger (like os-vif) before the guest attaches - refusing to create it"
        )
    try:
        tun_flags = int((SYS_NET / name / "tun_flags").read_text(), 16)
    except (OSError, ValueError) as e:
        raise GuestError(f"device {name!r} exists but is not a TUN/TAP device ({e})") from e
    if not tun_flags & IFF_TAP:
        raise GuestError(f"device {name!r} is a TUN (layer 3) device, not a TAP")
    # A multi-queue TAP only accepts attachers that ask for multi-queue too.
    flags = IFF_TAP | IFF_NO_PI | (tun_flags & IFF_MULTI_QUEUE)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    except OSError as e:
        os.close(fd)
        if e.errno == errno.EBUSY:
            raise GuestError(
                f"TAP {name!r} is already held by another process; is another guest "
                f"attached to it? stop that one first"
            ) from e
        raise GuestError(f"cannot attach to TAP {name!r}: {e}") from e
    if _ifindex(name) != before:
        # The device vanished between the check and the ioctl, and the ioctl made a new one.
        os.close(fd)
        raise GuestError(f"TAP {name!r} was deleted while attaching; not using a recreated one")
    return fd


class TapPort:
    """A guest's NIC: the TAP fd plus the guest's own MAC/IP and its ARP responder."""

    def __init__(self, name: str, mac: bytes, ip: bytes) -> None:
        self.name = name
        self.mac = mac
        self.ip = ip
        self.fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self.fd is not None

    def open(self) -> int:
        """Attach to the TAP (see :func:`open_tap`); idempotent."""
        if self.fd is None:
            self.fd = open_tap(self.name)
        return self.fd

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def read_frames(self, limit: int = 256) -> list[bytes]:
        """Drain up to ``limit`` queued frames. Raises OSError if the device went away."""
        if self.fd is None:
            return []
        out: list[bytes] = []
        while len(out) < limit:
            try:
                out.append(os.read(self.fd, MAX_FRAME))
            except BlockingIOError:
                break
        return out

    def send(self, frame: bytes) -> bool:
        """Write one frame; False if it was dropped (queue full, device down), like a NIC."""
        if self.fd is None:
            return False
        try:
            os.write(self.fd, frame)
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno in (errno.EIO, errno.ENOBUFS):
                return False
            raise
        return True

    def answer_arp(self, eth: frames.Ethernet) -> bool:
        """Reply to an ARP request for our own IP; True if the frame was such a request."""
        if eth.ethertype != frames.ETH_P_ARP:
            return False
        arp = frames.parse_arp(eth.payload)
        if arp is None or arp.op != frames.ARP_OP_REQUEST or arp.tpa != self.ip:
            return False
        self.send(frames.arp_reply_frame(self.mac, self.ip, arp.sha, arp.spa))
        return True

    def addressed_to_me(self, eth: frames.Ethernet) -> bool:
        return eth.dst == self.mac or eth.dst == frames.BROADCAST_MAC
