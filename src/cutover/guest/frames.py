"""Pure building and parsing of the few frames an emulated guest needs.

Ethernet, ARP, QEMU's RARP announcement, IPv4 and ICMP echo - nothing else crosses
the TAP of an emulated guest that it has to understand. Hand-rolled with ``struct``
because the guest processes must not import anything heavy (no scapy), and pure so
the on-wire format can be unit-tested without root.

Addresses are passed as raw bytes (6 for a MAC, 4 for an IPv4 address) on the hot
path; :func:`mac_bytes` / :func:`ip_bytes` convert the human forms once at start-up.
Parsers return ``None`` for anything they do not understand or that fails a
checksum, so a guest simply ignores the frame instead of crashing on noise.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_RARP = 0x8035
BROADCAST_MAC = b"\xff" * 6
ETH_HEADER_LEN = 14
MIN_FRAME_LEN = 60
"""Minimum Ethernet frame without FCS; shorter frames are zero-padded like a NIC does."""

ARP_HTYPE_ETH = 1
ARP_OP_REQUEST = 1
ARP_OP_REPLY = 2
ARP_OP_REQUEST_REV = 3
"""RARP "reverse request": the opcode QEMU's announce uses."""
ARP_OP_REPLY_REV = 4

IPPROTO_ICMP = 1
ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_ICMP_ECHO = struct.Struct("!BBHHH")


def mac_bytes(mac: str) -> bytes:
    """``"02:00:00:00:00:01"`` -> 6 bytes; raises ValueError on anything else."""
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {mac!r} (want six colon-separated hex pairs)")
    return bytes(int(p, 16) for p in parts)


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def ip_bytes(ip: str) -> bytes:
    """Dotted quad -> 4 bytes; strict (``inet_pton``), raises ValueError."""
    try:
        return socket.inet_pton(socket.AF_INET, ip)
    except OSError as e:
        raise ValueError(f"not an IPv4 address: {ip!r}") from e


def ip_str(ip: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET, ip)


# --- Ethernet ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ethernet:
    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes
    """Everything after the header, including any padding."""


def build_ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    """An Ethernet frame zero-padded to the 60-byte minimum (the TAP adds no padding)."""
    frame = _ETH.pack(dst, src, ethertype) + payload
    if len(frame) < MIN_FRAME_LEN:
        frame += bytes(MIN_FRAME_LEN - len(frame))
    return frame


def parse_ethernet(frame: bytes) -> Ethernet | None:
    if len(frame) < ETH_HEADER_LEN:
        return None
    dst, src, ethertype = _ETH.unpack_from(frame)
    return Ethernet(dst, src, ethertype, frame[ETH_HEADER_LEN:])


# --- ARP / RARP -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arp:
    """An Ethernet/IPv4 ARP or RARP packet (same layout, different ethertype and opcodes)."""

    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes


def build_arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    """The 28-byte ARP/RARP body for Ethernet hardware and IPv4 protocol addresses."""
    return _ARP.pack(ARP_HTYPE_ETH, ETH_P_IP, 6, 4, op, sha, spa, tha, tpa)


def parse_arp(payload: bytes) -> Arp | None:
    """Parse an ARP/RARP body; None unless it is Ethernet/IPv4 (the only kind we meet)."""
    if len(payload) < _ARP.size:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(payload)
    if (htype, ptype, hlen, plen) != (ARP_HTYPE_ETH, ETH_P_IP, 6, 4):
        return None
    return Arp(op, sha, spa, tha, tpa)


def arp_request_frame(src_mac: bytes, src_ip: bytes, target_ip: bytes) -> bytes:
    """Broadcast "who has target_ip, tell src_ip"."""
    body = build_arp(ARP_OP_REQUEST, src_mac, src_ip, bytes(6), target_ip)
    return build_ethernet(BROADCAST_MAC, src_mac, ETH_P_ARP, body)


def arp_reply_frame(src_mac: bytes, src_ip: bytes, dst_mac: bytes, dst_ip: bytes) -> bytes:
    """Unicast "src_ip is at src_mac" to the asker."""
    body = build_arp(ARP_OP_REPLY, src_mac, src_ip, dst_mac, dst_ip)
    return build_ethernet(dst_mac, src_mac, ETH_P_ARP, body)


def rarp_announce_frame(mac: bytes) -> bytes:
    """The self-announcement QEMU sends after a migration (net/announce.c).

    Byte for byte what ``announce_self_create`` builds: broadcast, ethertype 0x8035,
    opcode 3 (reverse request), sender and target hardware address = own MAC, both
    protocol addresses 0, zero-padded to 60 bytes. Switches (and OVN, via the
    ``activation-strategy=rarp`` hook) learn the new location of the MAC from it; it
    carries no IP, which is why OVN cannot use it to update ARP caches.
    """
    body = build_arp(ARP_OP_REQUEST_REV, mac, bytes(4), mac, bytes(4))
    return build_ethernet(BROADCAST_MAC, mac, ETH_P_RARP, body)


# --- IPv4 / ICMP ------------------------------------------------------------------------


def inet_checksum(data: bytes) -> int:
    """RFC 1071 ones'-complement checksum; 0 when run over data with a valid checksum."""
    if len(data) % 2:
        data += b"\x00"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True, slots=True)
class Ipv4:
    src: bytes
    dst: bytes
    proto: int
    ttl: int
    ident: int
    payload: bytes
    """Exactly total-length minus header: Ethernet padding is cut off."""


def build_ipv4(
    src: bytes, dst: bytes, proto: int, payload: bytes, ttl: int = 64, ident: int = 0
) -> bytes:
    """An IPv4 packet with a 20-byte header, DF set, and a correct header checksum."""
    total = _IPV4.size + len(payload)
    header = _IPV4.pack(0x45, 0, total, ident & 0xFFFF, 0x4000, ttl, proto, 0, src, dst)
    csum = inet_checksum(header)
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def parse_ipv4(packet: bytes) -> Ipv4 | None:
    """Parse an unfragmented IPv4 packet; None on bad version/length/checksum or fragments."""
    if len(packet) < _IPV4.size:
        return None
    ver_ihl, _tos, total, ident, frag, ttl, proto, _csum, src, dst = _IPV4.unpack_from(packet)
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < _IPV4.size or total < ihl or total > len(packet):
        return None
    if inet_checksum(packet[:ihl]) != 0:
        return None
    if frag & 0x3FFF:  # MF set or a non-zero offset: we never reassemble
        return None
    return Ipv4(src, dst, proto, ttl, ident, packet[ihl:total])


@dataclass(frozen=True, slots=True)
class IcmpEcho:
    type: int
    ident: int
    seq: int
    data: bytes


def build_icmp_echo(icmp_type: int, ident: int, seq: int, data: bytes) -> bytes:
    """ICMP echo request (8) or reply (0) with a correct checksum; seq is taken mod 2**16."""
    header = _ICMP_ECHO.pack(icmp_type, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    csum = inet_checksum(header + data)
    return header[:2] + struct.pack("!H", csum) + header[4:] + data


def parse_icmp_echo(payload: bytes) -> IcmpEcho | None:
    """Parse an ICMP echo request/reply; None for other ICMP types or a bad checksum."""
    if len(payload) < _ICMP_ECHO.size:
        return None
    icmp_type, code, _csum, ident, seq = _ICMP_ECHO.unpack_from(payload)
    if icmp_type not in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY) or code != 0:
        return None
    if inet_checksum(payload) != 0:
        return None
    return IcmpEcho(icmp_type, ident, seq, payload[_ICMP_ECHO.size :])


def icmp_echo_frame(
    icmp_type: int,
    src_mac: bytes,
    dst_mac: bytes,
    src_ip: bytes,
    dst_ip: bytes,
    ident: int,
    seq: int,
    data: bytes,
    ip_ident: int = 0,
) -> bytes:
    """A complete Ethernet frame carrying an ICMP echo request or reply."""
    icmp = build_icmp_echo(icmp_type, ident, seq, data)
    ip = build_ipv4(src_ip, dst_ip, IPPROTO_ICMP, icmp, ident=ip_ident)
    return build_ethernet(dst_mac, src_mac, ETH_P_IP, ip)


def echo_reply_for(frame: Ethernet, ip: Ipv4, echo: IcmpEcho, own_mac: bytes) -> bytes:
    """The reply a host sends to an echo request: back to the frame's source MAC.

    Addressing the reply to the request's source MAC (instead of resolving the IP
    with ARP) is what a real guest does in effect - its neighbour entry was just
    learned from the request - and it keeps ARP out of the blackout measurement.
    """
    return icmp_echo_frame(
        ICMP_ECHO_REPLY,
        own_mac,
        frame.src,
        ip.dst,
        ip.src,
        echo.ident,
        echo.seq,
        echo.data,
        ip_ident=ip.ident,
    )
