"""The hypervisor-driver seam: what the migration core needs from "the thing running VMs".

The migration core orders OVN changes around a handful of hypervisor events - the
destination TAP appearing, the source pausing, the destination resuming and
announcing itself. This Protocol names exactly those steps so the same orchestration
runs against the emulated guests (:mod:`cutover.guest.emulated`) and, later, real
QEMU over QMP, and so the core never learns how a guest is reached.

All times are wall-clock milliseconds, comparable with the prober's samples. Every
method raises :class:`~cutover.errors.GuestError` (or
:class:`~cutover.errors.WaitTimeout`) on failure and leaves rollback to :meth:`abort`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cutover.site import ChassisEndpoint, VmSpec


@runtime_checkable
class ReportsMigration(Protocol):
    """Optional: a hypervisor that can say what its last switchover of a VM cost."""

    def last_migration(self, vm: VmSpec) -> dict[str, Any]:
        """Figures of ``vm``'s last switchover, e.g. ``guest_pause_ms`` (source stopped ->
        destination resumed, by the hypervisor's own clock), ms and MiB; {} if none."""


@runtime_checkable
class OverlapsCopy(Protocol):
    """Optional: a hypervisor whose pre-copy can run while the orchestrator waits for
    something else (the overlapping gates of :mod:`cutover.migration.gates`).

    ``start_copy`` + ``wait_copied`` together do what ``copy_memory`` does; in between the
    copy runs by itself (QEMU's migration thread), and the caller may wait for readiness."""

    def start_copy(self, vm: VmSpec, dst: ChassisEndpoint, hold_convergence: bool) -> None:
        """Start the pre-copy and return at once. ``hold_convergence``: keep the copy from
        converging (and so the source from being stopped) until
        :meth:`release_convergence`. GuestError if it cannot start."""

    def keep_held(self, vm: VmSpec, until: threading.Event, timeout_s: float) -> None:
        """Block until ``until`` is set, keeping the held copy from converging meanwhile
        (the source runs); WaitTimeout after ``timeout_s``."""

    def hold_to_last_pass(self, vm: VmSpec) -> None:
        """Keep holding until only the held copy's last pass is left (then return, still
        held): the moment to pre-activate, so that cloned traffic queues for the shortest
        time before the switchover."""

    def release_convergence(self, vm: VmSpec) -> None:
        """Let the copy converge with its real downtime limit (no-op if not held)."""

    def wait_copied(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        """Block until only the switchover is left (the source may be stopped then, as
        after ``copy_memory``); GuestError if the copy failed or an end died, WaitTimeout
        after the hypervisor's migration timeout."""


@runtime_checkable
class SignalsSourceStop(Protocol):
    """Optional: a hypervisor that can tell the moment the source's vCPUs have stopped for
    the switchover (QEMU: the source's ``STOP`` event, then ``pre-switchover``). The TAP
    gate of ``--activation pre-gated`` opens on it (docs/switchover.md, "The TAP gate")."""

    def on_source_stopped(self, vm: VmSpec, callback: Callable[[float], None]) -> None:
        """Run ``callback(stop_ms)`` once (wall ms of the stop, by the hypervisor's clock)
        when the source of ``vm``'s migration has stopped and the switchover is under way,
        in the migration's thread; it must not raise. Not run if the migration is aborted.
        GuestError if there is no source guest."""


@dataclass(frozen=True)
class GuestState:
    """What runs of a VM on one chassis, as the hypervisor sees it right now.

    ``state`` is ``running``, ``paused``, ``incoming`` (waiting for a migration), ``dead``
    (its process is gone without a clean stop), ``missing`` (no guest at all) or
    ``unknown`` (it could not be asked); ``detail`` says what was seen, for messages.
    """

    state: str
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"

    def __str__(self) -> str:
        return f"{self.state} ({self.detail})" if self.detail else self.state


class Hypervisor(Protocol):
    def ensure_running(self, vm: VmSpec) -> None:
        """The guest runs and answers on ``vm.chassis``; start it if absent (after ``lab up``)."""

    def prepare_destination(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        """Start an incoming guest on ``dst`` (it takes the TAP now if the TAP already exists)."""

    def attach_destination(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        """The destination TAP now exists: the incoming guest takes hold of it."""

    def copy_memory(self, vm: VmSpec, dst: ChassisEndpoint, duration_ms: float) -> None:
        """Pre-copy; returns when only the final switchover is left.

        ``duration_ms`` is the emulator's modelled copy time (it sleeps it, the source
        answering meanwhile); a real hypervisor copies for as long as the copy takes and
        may already have stopped the source when it returns (QEMU's pre-switchover).
        If the source or the incoming guest dies meanwhile, raises GuestError at once (not
        when the copy would have ended), naming the guest, its chassis and how it ended."""

    def pause_source(self, vm: VmSpec, window_ms: float) -> float:
        """Stop the source's vCPUs (it stops answering); returns the wall ms it paused at.

        ``window_ms`` is the emulator's stop-and-copy window (it sleeps it after pausing);
        a real hypervisor's window is its own. The migration core never sleeps to emulate."""

    def switchover(self, vm: VmSpec, dst: ChassisEndpoint) -> float:
        """The destination resumes and announces itself (RARP); returns the wall ms it resumed."""

    def guest_events(self, vm: VmSpec, chassis: str) -> list[dict[str, Any]]:
        """The guest's own timeline on ``chassis`` (``{"t_ms", "event", "detail"}``, e.g. RARPs)."""

    def finish_source(self, vm: VmSpec) -> None:
        """After a successful switchover: stop the source guest on ``vm.chassis``."""

    def abort(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        """Undo: stop the destination guest if any, resume the source if paused. Idempotent."""

    def stop(self, vm: VmSpec, chassis: str) -> None:
        """Stop the guest of ``vm`` on ``chassis`` if there is one."""

    def guest_state(self, vm: VmSpec, chassis: str) -> GuestState:
        """What runs of ``vm`` on ``chassis``; changes nothing and never raises (a guest that
        cannot be asked is ``unknown``). The orchestrator reports it after a rollback."""
