"""The single-threaded process skeleton shared by the guest emulator and the prober.

Both are tiny daemons living in a chassis namespace: one ``select`` loop multiplexing
a TAP fd, a control socket and precise timers (RARP rounds, probe slots), plus a
pidfile and signal handling so an orchestrator in another process can find and stop
them. One thread keeps timer jitter low and makes every state change atomic with
respect to frame handling - no locks, no races between "paused" and "answer".

Signals are turned into an ordinary loop event via ``signal.set_wakeup_fd``: the C
handler writes to a pipe the loop selects on, so SIGTERM ends the loop promptly and
the normal cleanup (remove socket and pidfile) runs.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType

Callback = Callable[[], None]


def wall_ms() -> float:
    """Wall-clock milliseconds: comparable across processes and with OVN's own logs."""
    return time.time() * 1000.0


def log(message: str) -> None:
    """One timestamped line on stderr (the spawner sends it to the process's log file)."""
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    print(f"{stamp} [{os.getpid()}] {message}", file=sys.stderr, flush=True)


class Timer:
    """Handle for a scheduled callback; :meth:`cancel` makes it a no-op."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    """``select`` over readers/writers with monotonic-clock timers and a signal wakeup pipe."""

    def __init__(self) -> None:
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._stopped = False
        self.stop_reason = ""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._readers[fd] = callback

    def remove_reader(self, fd: int) -> None:
        self._readers.pop(fd, None)

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._writers[fd] = callback

    def remove_writer(self, fd: int) -> None:
        self._writers.pop(fd, None)

    def call_at(self, when: float, callback: Callback) -> Timer:
        """Run ``callback`` at ``time.monotonic() == when`` (or as soon after as possible)."""
        timer = Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def call_later(self, delay_s: float, callback: Callback) -> Timer:
        return self.call_at(time.monotonic() + delay_s, callback)

    def stop(self, reason: str) -> None:
        """End :meth:`run` after the current callback; safe from signal handlers."""
        if not self._stopped:
            self.stop_reason = reason
        self._stopped = True

    def handle_signals(self) -> None:
        """SIGTERM/SIGINT/SIGHUP stop the loop (so cleanup runs) instead of killing us."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.stop(f"signal {signal.Signals(signum).name}")

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_signal)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def run(self) -> None:
        while not self._stopped:
            self._run_due_timers()
            if self._stopped:
                break
            timeout: float | None = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            readable, writable, _ = select.select(
                [self._wake_r, *self._readers], list(self._writers), [], timeout
            )
            # Timers first: they carry the timing-critical work (probe slots, RARP rounds).
            self._run_due_timers()
            for fd in readable:
                if fd == self._wake_r:
                    self._drain_wakeup()
                elif not self._stopped and (cb := self._readers.get(fd)) is not None:
                    self._guarded(cb)
            for fd in writable:
                if not self._stopped and (cb := self._writers.get(fd)) is not None:
                    self._guarded(cb)

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now and not self._stopped:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                self._guarded(timer.callback)

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    @staticmethod
    def _guarded(callback: Callback) -> None:
        """A bug in one handler is logged, not fatal: the guest must keep its TAP."""
        try:
            callback()
        except Exception:
            log("unhandled error in event handler:\n" + traceback.format_exc())


class Pidfile:
    """Context manager: write our pid at start, remove the file at exit if it is still ours."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = os.getpid()

    def __enter__(self) -> Pidfile:
        tmp = self.path.with_name(self.path.name + f".{self.pid}.tmp")
        tmp.write_text(f"{self.pid}\n")
        tmp.replace(self.path)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.path.read_text().strip() == str(self.pid):
                self.path.unlink()
        except OSError:
            pass


def guest_arg_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line every guest process shares: its NIC, control socket and pidfile."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--tap", required=True, help="existing TAP device to attach to")
    p.add_argument("--mac", required=True, help="own MAC address")
    p.add_argument("--ip", required=True, help="own IPv4 address")
    p.add_argument("--control", required=True, type=Path, help="unix control socket to serve")
    p.add_argument("--pidfile", required=True, type=Path)
    return p


def read_pidfile(path: Path) -> int | None:
    """The pid in ``path``, or None if the file is missing or garbage."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None
