"""A fake VM that behaves on the wire like a QEMU guest being live-migrated.

Run as ``python -m cutover.guest.emulator --tap T --mac M --ip I --control SOCK
--pidfile F [--incoming]``. It holds the TAP, answers ARP for its IP and ICMP echo
requests addressed to it, and follows QEMU's run states:

* ``running``  - answers.
* ``paused``   - the vCPUs are stopped: frames are read and dropped (like ``stop``).
* ``incoming`` - like ``qemu -incoming``: not answering; the TAP is opened at start if
  it exists, else on ``attach``/``resume`` (the plugger creates it mid-migration).

On ``resume`` with ``announce`` it sends QEMU's RARP self-announcement at +0, +50,
+200, +450 and +800 ms (QEMU's defaults: initial 50 ms, step 100 ms, 5 rounds), the
signal OVN's ``activation-strategy=rarp`` waits for. The precise timing matters
because the measured blackout depends on when the first RARP leaves the TAP.

Frames arriving in ``paused``/``incoming`` are dropped rather than queued: a real QEMU
leaves them in the TAP queue and may answer stale requests on resume, which would
only make the blackout look shorter than what a client experiences.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from typing import Any

from cutover.errors import GuestError
from cutover.guest import frames
from cutover.guest.control import Reply, error, serve
from cutover.guest.runtime import EventLoop, Timer, guest_arg_parser, log, wall_ms
from cutover.guest.tap import TapPort, tap_exists

ANNOUNCE_OFFSETS_MS = (0.0, 50.0, 200.0, 450.0, 800.0)
"""QEMU's default announce schedule (announce-initial 50, -step 100, -rounds 5)."""

RUNNING, PAUSED, INCOMING = "running", "paused", "incoming"


class Emulator:
    """The guest's state machine; all methods run on the event loop thread."""

    def __init__(self, loop: EventLoop, port: TapPort, state: str) -> None:
        self.loop = loop
        self.port = port
        self.state = state
        self.answered = 0
        self.arp_answered = 0
        self.events: list[dict[str, Any]] = []
        self._announce: list[Timer] = []

    # --- TAP -----------------------------------------------------------------------

    def attach(self) -> None:
        """Take hold of the TAP now (idempotent); raises GuestError if it is missing."""
        if self.port.is_open:
            return
        fd = self.port.open()
        self.loop.add_reader(fd, self._on_frames)
        self._event("attached", {"tap": self.port.name})
        log(f"attached to TAP {self.port.name}")

    def detach(self, why: str) -> None:
        if self.port.fd is not None:
            self.loop.remove_reader(self.port.fd)
            self.port.close()
            self._event("detached", {"tap": self.port.name, "why": why})
            log(f"detached from TAP {self.port.name}: {why}")

    def _on_frames(self) -> None:
        try:
            batch = self.port.read_frames()
        except OSError as e:  # the device was deleted under us
            self.detach(f"read failed: {e}")
            return
        if self.state != RUNNING:
            return
        for raw in batch:
            self._handle(raw)

    def _handle(self, raw: bytes) -> None:
        eth = frames.parse_ethernet(raw)
        if eth is None or not self.port.addressed_to_me(eth):
            return
        if self.port.answer_arp(eth):
            self.arp_answered += 1
            return
        if eth.ethertype != frames.ETH_P_IP:
            return
        ip = frames.parse_ipv4(eth.payload)
        if ip is None or ip.dst != self.port.ip or ip.proto != frames.IPPROTO_ICMP:
            return
        echo = frames.parse_icmp_echo(ip.payload)
        if echo is None or echo.type != frames.ICMP_ECHO_REQUEST:
            return
        if self.port.send(frames.echo_reply_for(eth, ip, echo, self.port.mac)):
            self.answered += 1

    # --- run state -----------------------------------------------------------------

    def pause(self) -> float:
        if self.state != RUNNING:
            raise GuestError(f"cannot pause: guest is {self.state}, not running")
        self.state = PAUSED
        self._cancel_announce()
        t = self._event("paused", None)
        log("paused")
        return t

    def resume(self, announce: bool) -> float:
        if self.state == RUNNING:
            raise GuestError("cannot resume: guest is already running")
        self.attach()  # an incoming guest whose TAP appeared without an explicit attach
        self.state = RUNNING
        t = self._event("resumed", {"announce": announce})
        log(f"resumed (announce={announce})")
        self._cancel_announce()  # forget the fired timers of an earlier resume
        if announce:
            start = time.monotonic()
            for n, offset in enumerate(ANNOUNCE_OFFSETS_MS):
                if offset == 0.0:
                    self._send_rarp(n)
                else:
                    self._announce.append(
                        self.loop.call_at(start + offset / 1000.0, partial(self._send_rarp, n))
                    )
        return t

    def _send_rarp(self, n: int) -> None:
        if self.state != RUNNING:
            return
        sent = self.port.send(frames.rarp_announce_frame(self.port.mac))
        self._event("rarp", {"round": n, "sent": sent})

    def _cancel_announce(self) -> None:
        for timer in self._announce:
            timer.cancel()
        self._announce.clear()

    def _event(self, event: str, detail: Any) -> float:
        t = wall_ms()
        self.events.append({"t_ms": t, "event": event, "detail": detail})
        return t

    # --- control -------------------------------------------------------------------

    def handle(self, request: dict[str, Any], _reply: Reply) -> dict[str, Any] | None:
        cmd = request["cmd"]
        try:
            if cmd == "status":
                return {
                    "ok": True,
                    "state": self.state,
                    "tap_open": self.port.is_open,
                    "answered": self.answered,
                    "arp_answered": self.arp_answered,
                }
            if cmd == "attach":
                self.attach()
                return {"ok": True, "tap_open": True}
            if cmd == "pause":
                return {"ok": True, "t_ms": self.pause()}
            if cmd == "resume":
                announce = request.get("announce", False)
                if not isinstance(announce, bool):
                    return error('"announce" must be true or false')
                return {"ok": True, "t_ms": self.resume(announce)}
            if cmd == "events":
                return {"ok": True, "events": list(self.events)}
            if cmd == "stop":
                self.loop.stop("stop command")
                return {"ok": True}
        except GuestError as e:
            return error(str(e))
        return error(f"unknown command {cmd!r}; known: status attach pause resume events stop")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = guest_arg_parser("cutover.guest.emulator", "A fake VM holding a TAP like QEMU.")
    p.add_argument("--incoming", action="store_true", help="wait for a migration (QEMU -incoming)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        port = TapPort(args.tap, frames.mac_bytes(args.mac), frames.ip_bytes(args.ip))
    except ValueError as e:
        print(f"emulator: {e}", file=sys.stderr)
        return 2
    loop = EventLoop()
    loop.handle_signals()
    emu = Emulator(loop, port, INCOMING if args.incoming else RUNNING)

    def start() -> str:
        if not args.incoming or tap_exists(args.tap):
            emu.attach()
        return f"tap={args.tap} mac={args.mac} ip={args.ip} state={emu.state}"

    return serve("emulator", loop, emu.handle, args.control, args.pidfile, start, port.close)

if __name__ == "__main__":
    sys.exit(main())
