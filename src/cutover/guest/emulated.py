"""`Hypervisor` implemented with emulator processes, one per (VM, chassis).

Stateless across CLI invocations: the guest of VM ``v`` on chassis ``c`` is found at
``{site.guest_dir}/{v}@{c}.sock`` (pidfile ``.pid``, log ``.log``) and started inside
that chassis's network namespace, so ``lab up`` can start guests and a later
``migrate`` can drive them. Two guests of the same VM - source and incoming
destination - coexist during a migration exactly like two QEMU processes do.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cutover.errors import GuestError, InvalidMigration
from cutover.guest.base import GuestState
from cutover.guest.inventory import EMULATOR_MODULE, guest_files
from cutover.guest.process import ControlledProcess, ExitWatch, liveness
from cutover.site import ChassisEndpoint, Site, VmSpec

MODULE = EMULATOR_MODULE


class EmulatedHypervisor:
    """Drives ``python -m cutover.guest.emulator`` processes; implements ``Hypervisor``."""

    def __init__(
        self, site: Site, ready_timeout_s: float = 10.0, request_timeout_s: float = 5.0
    ) -> None:
        if not site.guest_dir:
            raise GuestError(f"site {site.name!r} has no guest_dir for guest sockets")
        self.site = site
        self.ready_timeout_s = ready_timeout_s
        self.request_timeout_s = request_timeout_s
        self._paused_ms: dict[str, float] = {}
        self._figures: dict[str, dict[str, Any]] = {}

    # --- Hypervisor ----------------------------------------------------------------

    def ensure_running(self, vm: VmSpec) -> None:
        guest = self._find(vm, vm.chassis)
        if guest is None:
            self._spawn(vm, vm.chassis, incoming=False)
            return
        status = guest.request({"cmd": "status"}, self.request_timeout_s)
        if status.get("state") != "running":
            guest.request({"cmd": "resume", "announce": True}, self.request_timeout_s)

    def prepare_destination(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        if dst.name == vm.chassis:
            raise InvalidMigration(f"VM {vm.name!r} already runs on {dst.name!r}")
        guest = self._find(vm, dst.name)
        if guest is None:
            self._spawn(vm, dst.name, incoming=True)
            return
        state = guest.request({"cmd": "status"}, self.request_timeout_s).get("state")
        if state != "incoming":
            raise GuestError(
                f"a guest of {vm.name!r} is already {state} on {dst.name!r} ({guest!r}); "
                f"stop it first (e.g. abort the migration) before migrating there"
            )

    def attach_destination(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        self._require(vm, dst.name).request({"cmd": "attach"}, self.request_timeout_s)

    def copy_memory(self, vm: VmSpec, dst: ChassisEndpoint, duration_ms: float) -> None:
        """Wait out the pre-copy on both guests' pidfds, then check both still answer.

        QEMU's migration fails the moment either end goes away; so does this: the kernel
        wakes the wait when the source or the incoming guest exits, and the GuestError
        names which one died, on which chassis, how, and what its log said last.
        """
        ends = {vm.chassis: "source", dst.name: "incoming"}
        with ExitWatch() as watch:
            for chassis in ends:
                guest = self._require(vm, chassis)
                pid = guest.pid
                if pid is None:
                    raise GuestError(f"{guest!r} answers but has no pidfile; restart it")
                watch.add(chassis, pid, MODULE)
            started = time.monotonic()
            died = watch.wait(max(0.0, duration_ms) / 1000.0)
        if died is not None:
            chassis, pid, how = died
            into_ms = (time.monotonic() - started) * 1000.0
            guest = self._handle(vm, chassis)
            raise GuestError(
                f"the {ends[chassis]} guest {vm.name}@{chassis} (pid {pid}) died {into_ms:.0f} "
                f"ms into the {duration_ms:.0f} ms memory copy: {how}; its log "
                f"{guest.log_path} ends: {_last_lines(guest.log_tail())}"
            )
        self._require(vm, vm.chassis).request({"cmd": "status"}, self.request_timeout_s)
        self._require(vm, dst.name).request({"cmd": "status"}, self.request_timeout_s)

    def pause_source(self, vm: VmSpec, window_ms: float = 0.0) -> float:
        """Pause the source, then sleep the modelled stop-and-copy ``window_ms``."""
        resp = self._require(vm, vm.chassis).request({"cmd": "pause"}, self.request_timeout_s)
        self._paused_ms[vm.name] = float(resp["t_ms"])
        time.sleep(max(0.0, window_ms) / 1000.0)
        return float(resp["t_ms"])

    def switchover(self, vm: VmSpec, dst: ChassisEndpoint) -> float:
        guest = self._require(vm, dst.name)
        resp = guest.request({"cmd": "resume", "announce": True}, self.request_timeout_s)
        paused = self._paused_ms.pop(vm.name, None)
        if paused is not None:
            self._figures[vm.name] = {
                "stop_at_ms": paused, "resume_at_ms": float(resp["t_ms"]),
                "guest_pause_ms": round(float(resp["t_ms"]) - paused, 3),
            }
        return float(resp["t_ms"])

    def last_migration(self, vm: VmSpec) -> dict[str, Any]:
        """``guest_pause_ms`` of the last switchover (emulator pause -> resume), or {}."""
        return dict(self._figures.get(vm.name, {}))

    def guest_events(self, vm: VmSpec, chassis: str) -> list[dict[str, Any]]:
        resp = self._require(vm, chassis).request({"cmd": "events"}, self.request_timeout_s)
        events = resp.get("events")
        if not isinstance(events, list):
            raise GuestError(f"guest of {vm.name!r} on {chassis!r} sent malformed events")
        return events

    def finish_source(self, vm: VmSpec) -> None:
        self.stop(vm, vm.chassis)

    def abort(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        """Stop the destination, then resume the source with an announce.

        The announce re-teaches any learning switch (and OVN's RARP activation) that
        may already have seen the destination; it is harmless otherwise. Both halves
        are attempted even if one fails, so a retry has less left to do.
        """
        failures: list[str] = []
        if dst.name != vm.chassis:
            try:
                self.stop(vm, dst.name)
            except GuestError as e:
                failures.append(f"destination: {e}")
        try:
            source = self._find(vm, vm.chassis)
            if source is not None:
                state = source.request({"cmd": "status"}, self.request_timeout_s).get("state")
                if state != "running":
                    source.request({"cmd": "resume", "announce": True}, self.request_timeout_s)
        except GuestError as e:
            failures.append(f"source: {e}")
        if failures:
            raise GuestError(f"abort of {vm.name!r} incomplete: {'; '.join(failures)}")

    def stop(self, vm: VmSpec, chassis: str) -> None:
        """Stop it; a dead guest's leftover pidfile (its death record) is removed too."""
        (self._find(vm, chassis) or self._handle(vm, chassis)).stop()

    def guest_state(self, vm: VmSpec, chassis: str) -> GuestState:
        _control, pidfile = self.paths(vm, chassis)
        alive, pid = liveness(MODULE, pidfile)
        if alive == "missing":
            return GuestState("missing", f"no guest process: no {pidfile}")
        if alive == "dead":
            return GuestState(
                "dead", f"pid {pid} in {pidfile} is gone without a clean stop: killed or crashed"
            )
        try:
            status = self._handle(vm, chassis).request({"cmd": "status"}, self.request_timeout_s)
        except GuestError as e:
            return GuestState("unknown", f"pid {pid} runs but does not answer: {e}")
        return GuestState(str(status.get("state", "unknown")), f"pid {pid}")

    # --- beyond the Protocol -------------------------------------------------------

    def status(self, vm: VmSpec, chassis: str) -> dict[str, Any] | None:
        """The guest's status on ``chassis``, or None if no guest is there."""
        guest = self._find(vm, chassis)
        return None if guest is None else guest.request({"cmd": "status"}, self.request_timeout_s)

    def paths(self, vm: VmSpec, chassis: str) -> tuple[Path, Path]:
        """(control socket, pidfile) of the guest of ``vm`` on ``chassis``."""
        return guest_files(self.site.guest_dir, vm.name, chassis)

    # --- internals -----------------------------------------------------------------

    def _label(self, vm: VmSpec, chassis: str) -> str:
        return f"guest {vm.name}@{chassis}"

    def _handle(self, vm: VmSpec, chassis: str) -> ControlledProcess:
        """The guest's handle whether or not it runs (for its paths, log and clean-up)."""
        control, pidfile = self.paths(vm, chassis)
        return ControlledProcess(self._label(vm, chassis), MODULE, control, pidfile)

    def _find(self, vm: VmSpec, chassis: str) -> ControlledProcess | None:
        control, pidfile = self.paths(vm, chassis)
        return ControlledProcess.find(self._label(vm, chassis), MODULE, control, pidfile)

    def _require(self, vm: VmSpec, chassis: str) -> ControlledProcess:
        guest = self._find(vm, chassis)
        if guest is None:
            raise GuestError(
                f"no guest of {vm.name!r} runs on {chassis!r} "
                f"(nothing answers on {self.paths(vm, chassis)[0]})"
            )
        return guest

    def _spawn(self, vm: VmSpec, chassis: str, incoming: bool) -> ControlledProcess:
        control, pidfile = self.paths(vm, chassis)
        args = ["--tap", vm.tap, "--mac", vm.mac, "--ip", vm.ip]
        if incoming:
            args.append("--incoming")
        return ControlledProcess.spawn(
            self._label(vm, chassis),
            MODULE,
            args,
            control,
            pidfile,
            netns=self.site.chassis_named(chassis).netns,
            ready_timeout_s=self.ready_timeout_s,
        )


def _last_lines(text: str, n: int = 2, max_chars: int = 300) -> str:
    """The last ``n`` non-empty lines of a log tail, on one line, for an error message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    tail = " | ".join(lines[-n:]) or "(empty)"
    return tail if len(tail) <= max_chars else "..." + tail[-max_chars:]
