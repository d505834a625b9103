"""Orchestrator-side handle on the prober process of one client guest.

The prober runs in the client's chassis namespace and holds the client's TAP, so its
ICMP probes cross the real OVN datapath to the target VM. This class only spawns it,
starts and stops a measurement, and hands back the raw samples; turning them into a
blackout is :func:`cutover.probe.analysis.summarize`'s job, kept pure for testing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from cutover.errors import GuestError, InputError
from cutover.guest.inventory import PROBER_MODULE, prober_files
from cutover.guest.process import ControlledProcess
from cutover.probe.analysis import Sample
from cutover.site import Site, VmSpec

MODULE = PROBER_MODULE


@dataclass(frozen=True)
class ProbeStatus:
    state: str
    """``idle``, ``sending`` or ``draining``."""
    sent: int
    received: int
    last_recv_ms: float | None
    """Wall ms of the latest first reply (None: no reply yet)."""


class Prober:
    """Fixed-rate ICMP probing from ``client`` to ``target``; a context manager.

    The process is started on first use (or on ``__enter__``, to keep its start-up out
    of the measurement) and ended by :meth:`close`. Socket:
    ``{site.guest_dir}/{client}.probe.sock``.
    """

    def __init__(
        self,
        site: Site,
        client: VmSpec,
        target: VmSpec,
        interval_ms: float = 2.0,
        ready_timeout_s: float = 10.0,
    ) -> None:
        if not interval_ms > 0:
            raise InputError(f"probe interval must be > 0 ms, got {interval_ms}")
        if not site.guest_dir:
            raise GuestError(f"site {site.name!r} has no guest_dir for the prober's socket")
        self.site = site
        self.client = client
        self.target = target
        self.interval_ms = interval_ms
        self.ready_timeout_s = ready_timeout_s
        self.control, self.pidfile = prober_files(site.guest_dir, client.name)
        self.duplicates = 0
        """Duplicate replies seen by the last :meth:`stop`."""
        self.skipped_slots = 0
        """Probe slots the prober had to skip (it fell behind) in the last run."""
        self._proc: ControlledProcess | None = None

    def open(self) -> None:
        """Start the prober process (replacing a leftover one, whose arguments may differ)."""
        if self._proc is not None:
            return
        label = f"prober {self.client.name}->{self.target.name}"
        leftover = ControlledProcess.find(label, MODULE, self.control, self.pidfile, "quit")
        if leftover is not None:
            leftover.stop()
        args = [
            "--tap",
            self.client.tap,
            "--mac",
            self.client.mac,
            "--ip",
            self.client.ip,
            "--target-ip",
            self.target.ip,
            "--target-mac",
            self.target.mac,
            "--interval-ms",
            repr(float(self.interval_ms)),
        ]
        self._proc = ControlledProcess.spawn(
            label,
            MODULE,
            args,
            self.control,
            self.pidfile,
            netns=self.site.chassis_named(self.client.chassis).netns,
            quit_cmd="quit",
            ready_timeout_s=self.ready_timeout_s,
        )

    def start(self) -> float:
        """Begin probing; returns the wall ms of the first probe slot."""
        self.open()
        assert self._proc is not None
        return float(self._proc.request({"cmd": "start"})["t_ms"])

    def _status(self, resp: dict[str, Any]) -> ProbeStatus:
        try:
            return ProbeStatus(
                state=str(resp["state"]),
                sent=int(resp["sent"]),
                received=int(resp["received"]),
                last_recv_ms=None if resp.get("last_recv_ms") is None
                else float(resp["last_recv_ms"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise GuestError(f"{self._proc!r} returned a malformed status {resp!r}") from e

    def wait_steady(self, count: int, timeout_s: float) -> tuple[int | None, ProbeStatus]:
        """Block until ``count`` consecutive probes are answered, or ``timeout_s`` passed;
        returns the sequence number the steady run starts at (None on timeout) and the
        counts. The prober answers when it happens: nothing is polled."""
        if self._proc is None:
            raise GuestError(f"prober for {self.client.name!r} was never started")
        resp = self._proc.request({"cmd": "steady", "count": count,
                                   "timeout_ms": timeout_s * 1000.0}, timeout_s + 5.0)
        from_seq = resp.get("from_seq")
        return (None if from_seq is None else int(from_seq)), self._status(resp)

    def stop(self, timeout_s: float = 30.0) -> list[Sample]:
        """Stop probing, wait for late replies, and return ``(seq, sent_ms, recv_ms|None)``."""
        if self._proc is None:
            raise GuestError(f"prober for {self.client.name!r} was never started")
        resp = self._proc.request({"cmd": "stop"}, timeout_s)
        raw = resp.get("probes")
        if not isinstance(raw, list):
            raise GuestError(f"{self._proc!r} returned no probe list: {resp!r}")
        try:
            samples = [
                (int(seq), float(sent), None if recv is None else float(recv))
                for seq, sent, recv in raw
            ]
        except (TypeError, ValueError) as e:
            raise GuestError(f"{self._proc!r} returned malformed probes ({e})") from e
        self.duplicates = int(resp.get("duplicates", 0))
        self.skipped_slots = int(resp.get("skipped_slots", 0))
        return samples

    def close(self) -> None:
        """End the prober process; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop()

    def __enter__(self) -> Prober:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        with contextlib.suppress(GuestError):  # do not mask the error already in flight
            self.close()
