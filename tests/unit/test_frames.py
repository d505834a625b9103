"""On-wire format of the emulated guests' frames, checked against fixed byte layouts."""

from __future__ import annotations

import struct

import pytest

from cutover.guest import frames

MAC = bytes.fromhex("0200000a0b0c")
PEER = bytes.fromhex("02000000ffee")
IP = bytes([10, 0, 0, 11])
PEER_IP = bytes([10, 0, 0, 2])


def test_mac_and_ip_conversions_round_trip_and_reject_garbage() -> None:
    assert frames.mac_bytes("02:00:00:0A:0b:0c") == MAC
    assert frames.mac_str(MAC) == "02:00:00:0a:0b:0c"
    assert frames.ip_bytes("10.0.0.11") == IP
    assert frames.ip_str(IP) == "10.0.0.11"
    for bad in ("02:00:00:0a:0b", "02-00-00-0a-0b-0c", "2:0:0:a:b:c", "zz:00:00:00:00:00"):
        with pytest.raises(ValueError):
            frames.mac_bytes(bad)
    for bad in ("10.0.0", "10.0.0.256", "fe80::1", "10.0.0.1 "):
        with pytest.raises(ValueError):
            frames.ip_bytes(bad)


def test_rarp_announce_is_byte_identical_to_qemu_announce_self_create() -> None:
    # QEMU net/announce.c: ff*6 | mac | 0x8035 | htype 1 | ptype 0x0800 | 6 | 4 | op 3 |
    # sha=mac | spa=0 | tha=mac | tpa=0 | 18 zero bytes of padding -> 60 bytes.
    expected = (
        b"\xff" * 6
        + MAC
        + b"\x80\x35"
        + b"\x00\x01\x08\x00\x06\x04\x00\x03"
        + MAC
        + bytes(4)
        + MAC
        + bytes(4)
        + bytes(18)
    )
    frame = frames.rarp_announce_frame(MAC)
    assert len(frame) == 60
    assert frame == expected


def test_rarp_announce_parses_as_reverse_request() -> None:
    eth = frames.parse_ethernet(frames.rarp_announce_frame(MAC))
    assert eth is not None
    assert (eth.dst, eth.src, eth.ethertype) == (frames.BROADCAST_MAC, MAC, frames.ETH_P_RARP)
    arp = frames.parse_arp(eth.payload)
    assert arp == frames.Arp(frames.ARP_OP_REQUEST_REV, MAC, bytes(4), MAC, bytes(4))


def test_arp_request_and_reply_layout() -> None:
    req = frames.arp_request_frame(PEER, PEER_IP, IP)
    assert len(req) == 60
    assert req[:14] == b"\xff" * 6 + PEER + b"\x08\x06"
    eth = frames.parse_ethernet(req)
    assert eth is not None
    assert frames.parse_arp(eth.payload) == frames.Arp(1, PEER, PEER_IP, bytes(6), IP)

    rep = frames.arp_reply_frame(MAC, IP, PEER, PEER_IP)
    assert rep[:14] == PEER + MAC + b"\x08\x06"
    eth = frames.parse_ethernet(rep)
    assert eth is not None
    assert frames.parse_arp(eth.payload) == frames.Arp(2, MAC, IP, PEER, PEER_IP)


def test_parse_arp_rejects_other_hardware_or_protocol_and_short_bodies() -> None:
    good = frames.build_arp(1, PEER, PEER_IP, bytes(6), IP)
    assert frames.parse_arp(good) is not None
    assert frames.parse_arp(b"\x00\x06" + good[2:]) is None  # IEEE 802 hardware type
    assert frames.parse_arp(good[:2] + b"\x86\xdd" + good[4:]) is None  # IPv6 protocol
    assert frames.parse_arp(good[:27]) is None
    assert frames.parse_ethernet(b"\x00" * 13) is None


def test_ethernet_padding_only_for_short_frames() -> None:
    short = frames.build_ethernet(PEER, MAC, 0x88B5, b"x")
    assert len(short) == 60 and short[15:] == bytes(45)
    long = frames.build_ethernet(PEER, MAC, 0x88B5, b"y" * 100)
    assert len(long) == 114


def test_inet_checksum_rfc1071_example_and_odd_length() -> None:
    # RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to 0xddf2 -> checksum 0x220d.
    assert frames.inet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    # Odd length is padded with a zero byte.
    assert frames.inet_checksum(b"\x01") == frames.inet_checksum(b"\x01\x00") == 0xFEFF


def test_ipv4_header_matches_a_known_packet() -> None:
    # The classic example header (UDP, 115 bytes, DF, TTL 64, 192.168.0.1 -> .199): csum 0xb861.
    src, dst = bytes([192, 168, 0, 1]), bytes([192, 168, 0, 199])
    pkt = frames.build_ipv4(src, dst, 17, bytes(0x73 - 20), ttl=64, ident=0)
    assert pkt[:20] == bytes.fromhex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7")
    parsed = frames.parse_ipv4(pkt + bytes(7))  # trailing Ethernet padding is cut off
    assert parsed is not None
    assert (parsed.src, parsed.dst, parsed.proto, parsed.ttl) == (src, dst, 17, 64)
    assert len(parsed.payload) == 0x73 - 20


def test_parse_ipv4_rejects_bad_checksum_fragments_and_truncation() -> None:
    pkt = bytearray(frames.build_ipv4(IP, PEER_IP, 1, b"abcd"))
    assert frames.parse_ipv4(bytes(pkt)) is not None
    corrupt = bytearray(pkt)
    corrupt[8] ^= 0x01  # TTL changed without fixing the checksum
    assert frames.parse_ipv4(bytes(corrupt)) is None
    frag = bytearray(pkt)
    frag[6:8] = b"\x20\x00"  # MF set
    frag[10:12] = b"\x00\x00"
    frag[10:12] = struct.pack("!H", frames.inet_checksum(bytes(frag[:20])))
    assert frames.parse_ipv4(bytes(frag)) is None
    assert frames.parse_ipv4(bytes(pkt[:-1])) is None  # total length beyond the data
    assert frames.parse_ipv4(b"\x60" + bytes(pkt[1:])) is None  # IPv6 version nibble


def test_icmp_echo_round_trip_checksum_and_16bit_seq_wrap() -> None:
    data = b"payload-" * 7
    icmp = frames.build_icmp_echo(frames.ICMP_ECHO_REQUEST, 0x1234, 70000, data)
    assert frames.inet_checksum(icmp) == 0
    echo = frames.parse_icmp_echo(icmp)
    assert echo == frames.IcmpEcho(8, 0x1234, 70000 & 0xFFFF, data)
    bad = bytearray(icmp)
    bad[-1] ^= 0xFF
    assert frames.parse_icmp_echo(bytes(bad)) is None
    unreachable = bytes([3, 1]) + icmp[2:]
    assert frames.parse_icmp_echo(unreachable) is None


def test_echo_reply_goes_back_to_the_request_source_mac() -> None:
    data = bytes(range(56))
    req = frames.icmp_echo_frame(
        frames.ICMP_ECHO_REQUEST, PEER, MAC, PEER_IP, IP, 7, 42, data, ip_ident=42
    )
    eth = frames.parse_ethernet(req)
    assert eth is not None and eth.ethertype == frames.ETH_P_IP
    ip = frames.parse_ipv4(eth.payload)
    assert ip is not None
    echo = frames.parse_icmp_echo(ip.payload)
    assert echo is not None and echo.type == frames.ICMP_ECHO_REQUEST

    reply = frames.parse_ethernet(frames.echo_reply_for(eth, ip, echo, MAC))
    assert reply is not None
    assert (reply.dst, reply.src) == (PEER, MAC)
    rip = frames.parse_ipv4(reply.payload)
    assert rip is not None
    assert (rip.src, rip.dst, rip.proto) == (IP, PEER_IP, frames.IPPROTO_ICMP)
    recho = frames.parse_icmp_echo(rip.payload)
    assert recho == frames.IcmpEcho(frames.ICMP_ECHO_REPLY, 7, 42, data)
