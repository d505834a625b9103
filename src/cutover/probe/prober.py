"""A client guest that measures reachability of a VM with fixed-rate ICMP probes.

Run as ``python -m cutover.probe.prober --tap T --mac M --ip I --target-ip IP
--target-mac MAC --interval-ms 2 --control SOCK --pidfile F``.

Unlike iputils ``ping`` it never waits for replies and never bursts: probe *k* is due
at ``t0 + k * interval`` on the monotonic clock; if the loop falls behind it skips to
the next future slot (counted as ``skipped_slots``) instead of sending a catch-up
burst that would bunch probes around the very blackout we measure. Every send and
every reply is stamped with the wall clock (ms) so the samples line up with the
orchestrator's and the guests' event times.

Matching uses a 32-bit sequence number plus a per-run nonce in the ICMP payload, so
the 16-bit ICMP sequence wrapping (after ~131 s at 2 ms) and late replies from a
previous run can never be mistaken for answers.

The prober talks to the target's MAC directly (no ARP) so only the datapath is
measured, but answers ARP for its own IP like any guest.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from typing import Any

from cutover.errors import GuestError
from cutover.guest import frames
from cutover.guest.control import Reply, error, serve
from cutover.guest.runtime import EventLoop, Timer, guest_arg_parser, log, wall_ms
from cutover.guest.tap import TapPort

DRAIN_S = 0.3
"""How long ``stop`` keeps listening for late replies before answering."""
MAGIC = b"CUTP"
PAYLOAD_LEN = 56  # like ping's default, so frame sizes look ordinary
_HEAD = struct.Struct("!4sII")

IDLE, SENDING, DRAINING = "idle", "sending", "draining"


class Prober:
    """Probe schedule, reply matching and the control handler; runs on the loop thread."""

    def __init__(
        self,
        loop: EventLoop,
        port: TapPort,
        target_ip: bytes,
        target_mac: bytes,
        interval_ms: float,
    ) -> None:
        self.loop = loop
        self.port = port
        self.target_ip = target_ip
        self.target_mac = target_mac
        self.interval_ms = interval_ms
        self.ident = os.getpid() & 0xFFFF
        self.state = IDLE
        self.probes: list[list[Any]] = []  # [seq, sent_ms, recv_ms | None], index == seq
        self.received = 0
        self.last_recv_ms: float | None = None
        self.duplicates = 0
        self.skipped_slots = 0
        self._run = 0
        self._t0 = 0.0
        self._slot = 0
        self._timer: Timer | None = None
        self._waiting: list[Reply] = []
        self._steady: tuple[int, Reply, Timer] | None = None
        """A ``steady`` request waiting for that many consecutive answered probes."""

    # --- TAP -----------------------------------------------------------------------

    def attach(self) -> None:
        fd = self.port.open()
        self.loop.add_reader(fd, self._on_frames)

    def _on_frames(self) -> None:
        try:
            batch = self.port.read_frames()
        except OSError as e:
            log(f"TAP {self.port.name} failed ({e}); probes from now on are lost")
            if self.port.fd is not None:
                self.loop.remove_reader(self.port.fd)
            self.port.close()
            return
        now = wall_ms()
        for raw in batch:
            self._handle(raw, now)

    def _handle(self, raw: bytes, now: float) -> None:
        eth = frames.parse_ethernet(raw)
        if eth is None or not self.port.addressed_to_me(eth):
            return
        if self.port.answer_arp(eth) or eth.ethertype != frames.ETH_P_IP:
            return
        ip = frames.parse_ipv4(eth.payload)
        if ip is None or ip.proto != frames.IPPROTO_ICMP or ip.dst != self.port.ip:
            return
        echo = frames.parse_icmp_echo(ip.payload)
        if echo is None or echo.type != frames.ICMP_ECHO_REPLY or echo.ident != self.ident:
            return
        if self.state == IDLE or len(echo.data) < _HEAD.size:
            return
        magic, run, seq = _HEAD.unpack_from(echo.data)
        if magic != MAGIC or run != self._run or seq >= len(self.probes):
            return
        probe = self.probes[seq]
        if probe[2] is None:
            probe[2] = now
            self.received += 1
            self.last_recv_ms = now
            self._check_steady(seq)
        else:
            self.duplicates += 1

    # --- schedule ------------------------------------------------------------------

    def start(self) -> float:
        if self.state != IDLE:
            raise GuestError(f"cannot start: prober is {self.state}")
        self.probes = []
        self.received = self.duplicates = self.skipped_slots = 0
        self.last_recv_ms = None
        self._run = (self._run + 1) & 0xFFFFFFFF
        self._slot = 0
        self._t0 = time.monotonic()
        self.state = SENDING
        t = wall_ms()
        self._tick()
        return t

    def _tick(self) -> None:
        seq = len(self.probes)
        data = _HEAD.pack(MAGIC, self._run, seq).ljust(PAYLOAD_LEN, b"\x00")
        frame = frames.icmp_echo_frame(
            frames.ICMP_ECHO_REQUEST,
            self.port.mac,
            self.target_mac,
            self.port.ip,
            self.target_ip,
            self.ident,
            seq,
            data,
            ip_ident=seq,
        )
        self.port.send(frame)
        self.probes.append([seq, wall_ms(), None])
        interval_s = self.interval_ms / 1000.0
        self._slot += 1
        due = self._t0 + self._slot * interval_s
        now = time.monotonic()
        if due <= now:  # behind schedule: skip to the next future slot, never burst
            slot = int((now - self._t0) / interval_s) + 1
            self.skipped_slots += slot - self._slot
            self._slot = slot
            due = self._t0 + slot * interval_s
        self._timer = self.loop.call_at(due, self._tick)

    def steady(self, count: int, timeout_ms: float, reply: Reply) -> None:
        """Answer ``reply`` once ``count`` consecutive probes (by sequence number, ending
        at a newly answered one) are all answered, or after ``timeout_ms`` with
        ``steady: false``: the bench's baseline before a migration, as an event."""
        if self.state != SENDING:
            raise GuestError(f"cannot wait for steady replies: prober is {self.state}")
        if self._steady is not None:
            raise GuestError("a steady request is already waiting")
        timer = self.loop.call_later(timeout_ms / 1000.0, lambda: self._answer_steady(None))
        self._steady = (count, reply, timer)

    def _check_steady(self, seq: int) -> None:
        if self._steady is None or seq + 1 < self._steady[0]:
            return
        count = self._steady[0]
        if all(p[2] is not None for p in self.probes[seq - count + 1 : seq + 1]):
            self._answer_steady(seq - count + 1)

    def _answer_steady(self, from_seq: int | None) -> None:
        """``from_seq``: the first probe of the steady run (None: timed out)."""
        if self._steady is None:
            return
        _, reply, timer = self._steady
        self._steady = None
        timer.cancel()
        reply({"ok": True, "steady": from_seq is not None, "from_seq": from_seq,
               **self._counts()})

    def _counts(self) -> dict[str, Any]:
        return {"state": self.state, "sent": len(self.probes), "received": self.received,
                "last_recv_ms": self.last_recv_ms}

    def stop(self, reply: Reply) -> None:
        """Stop sending now; answer ``reply`` after the drain period with all samples."""
        if self.state == IDLE:
            raise GuestError("cannot stop: prober is not started")
        self._waiting.append(reply)
        if self.state == SENDING:
            if self._timer is not None:
                self._timer.cancel()
            self.state = DRAINING
            self.loop.call_later(DRAIN_S, self._finish)

    def _finish(self) -> None:
        self.state = IDLE
        result = {
            "ok": True,
            "interval_ms": self.interval_ms,
            "probes": self.probes,
            "duplicates": self.duplicates,
            "skipped_slots": self.skipped_slots,
        }
        waiting, self._waiting = self._waiting, []
        for reply in waiting:
            reply(result)

    # --- control -------------------------------------------------------------------

    def handle(self, request: dict[str, Any], reply: Reply) -> dict[str, Any] | None:
        cmd = request["cmd"]
        try:
            if cmd == "status":
                return {
                    "ok": True,
                    "state": self.state,
                    "tap_open": self.port.is_open,
                    "sent": len(self.probes),
                    "received": self.received,
                    "last_recv_ms": self.last_recv_ms,
                    "duplicates": self.duplicates,
                    "interval_ms": self.interval_ms,
                }
            if cmd == "start":
                return {"ok": True, "t_ms": self.start()}
            if cmd == "steady":
                self.steady(int(request["count"]), float(request["timeout_ms"]), reply)
                return None
            if cmd == "stop":
                self.stop(reply)
                return None
            if cmd == "quit":
                self.loop.stop("quit command")
                return {"ok": True}
        except GuestError as e:
            return error(str(e))
        return error(f"unknown command {cmd!r}; known: status start steady stop quit")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = guest_arg_parser("cutover.probe.prober", "Fixed-rate ICMP prober on a TAP.")
    p.add_argument("--target-ip", required=True)
    p.add_argument("--target-mac", required=True)
    p.add_argument("--interval-ms", type=float, default=2.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.interval_ms > 0:
            raise ValueError(f"--interval-ms must be > 0, got {args.interval_ms}")
        port = TapPort(args.tap, frames.mac_bytes(args.mac), frames.ip_bytes(args.ip))
        target_ip, target_mac = frames.ip_bytes(args.target_ip), frames.mac_bytes(args.target_mac)
    except ValueError as e:
        print(f"prober: {e}", file=sys.stderr)
        return 2
    loop = EventLoop()
    loop.handle_signals()
    prober = Prober(loop, port, target_ip, target_mac, args.interval_ms)

    def start() -> str:
        prober.attach()
        return f"tap={args.tap} -> {args.target_ip} every {args.interval_ms} ms"

    return serve("prober", loop, prober.handle, args.control, args.pidfile, start, port.close)

if __name__ == "__main__":
    sys.exit(main())
