"""The destination TAP gate (``--activation pre-gated``): no stale clones at the resume.

Once pre-activation has lifted the destination's rarp blocks, OVN sends the VM's traffic
to both chassis. Until the source stops (the rest of QEMU's last pass: 15-106 ms
measured, QEMU's 100 ms rate-limit window included) the source answers it, while the
copies sent to the destination queue in its TAP, unread: an incoming QEMU does not read
its TAP. After the RESUME the slow guest answers those stale frames first (duplicates
of replies the source already sent) and only then the fresh ones: head-of-line blocking
(docs/switchover.md, "The TAP queue"). The frames that queue AFTER the source stopped
are the useful ones: nobody else answers them.

Measured (AF_PACKET sniffers on both TAPs, L2 on the destination): stale frames also
reach the destination TAP well before the pre-activation - 55-81 frames in a ~100 ms
burst right at the destination's claim, before its rarp blocks are installed - and they
were the duplicates left once the gate closed only at the pre-activation (0-80 per run).

So the gate drops whatever is sent to the destination TAP from before the claim (right
before the network preparation, by when ovs-vswitchd has opened the port: it removes a
root qdisc it finds when it opens one) until the source's vCPUs stop - nothing can be
answered there before the resume, so nothing useful is lost - then lets frames queue
again (docs/switchover.md, "The TAP gate"):

- :class:`CloseTapGate` closes it (the chassis seam: the TAP's root qdisc becomes
  ``pfifo limit 0``, every frame a qdisc drop; the link, the OVS port and OVN's view of
  the port are untouched) and asks the hypervisor to call back once the source has
  stopped (:class:`~cutover.guest.base.SignalsSourceStop`: QEMU's ``STOP`` and
  ``pre-switchover`` events, read by the migration's own event reader, no polling). The
  QEMU driver runs the callback right after ``migrate-continue``, so the open - one round
  trip to the destination's agent - overlaps QEMU's stop-and-copy instead of delaying it;
- backstops, so a gate can never stay closed: :class:`OpenTapGate` right after the
  switchover (the destination's RESUME) opens it if the STOP's open has not (or failed);
  the undo of :class:`CloseTapGate` opens it on any rollback (a rolled-back migration
  also unplugs the destination TAP); the orchestrator opens it when a migration ends in
  any way (:func:`cutover.migration.orchestrator.run_steps`); ``cutover recover`` undoes
  or redoes these steps from the journal, which records the close before it happens.

The trade-off: probes sent between the source's STOP and the gate's opening are dropped
(lost) instead of queued, and probes cloned before the STOP are no longer answered twice.
"""

from __future__ import annotations

import re
import time
from typing import Any

from cutover.chassis.base import Chassis, TapGateState, Vif
from cutover.errors import InvalidMigration, PlugError
from cutover.guest.base import SignalsSourceStop
from cutover.migration.context import MigrationContext
from cutover.migration.steps import Step
from cutover.migration.timeline import Timeline

CLOSED = "tap-gate.closed"
OPENED = "tap-gate.opened"
FOUND_OPEN = "tap-gate.found-open"
"""Timeline marks; ``tap-gate.opened``'s detail is ``<what opened it>; <ms> ms after the
source's STOP; the gate dropped <n> frames`` (:func:`opened_by`, :func:`dropped_in`)."""
_DROPPED = re.compile(r"the gate dropped (\d+) frames")


def opened_by(detail: str) -> str:
    """What opened the gate, from a ``tap-gate.opened`` detail (``source STOP``, ...)."""
    return detail.split(";", 1)[0]


def dropped_in(detail: str) -> int | None:
    """The frames the gate dropped, from a ``tap-gate.opened`` detail (None if absent)."""
    found = _DROPPED.search(detail)
    return int(found.group(1)) if found else None


class TapGate:
    """The gate of one migration's destination TAP: closed once, opened once (whichever
    of the STOP, the RESUME, a rollback or the end of the migration comes first)."""

    def __init__(self, chassis: Chassis, vif: Vif, timeline: Timeline,
                 closed: bool = False) -> None:
        """``closed``: the gate may be closed already (a recovery's handle)."""
        self._chassis, self._vif, self._timeline = chassis, vif, timeline
        self._closed = closed
        self.stop_ms: float | None = None
        """Wall ms of the source's STOP, once the hypervisor reported it."""
        self.failure = ""
        """Why the STOP's open failed (the backstops retry)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the gate (PlugError if the TAP is not plugged: nothing changed then).
        Any other error leaves the gate maybe closed (an agent's answer lost after it
        closed it), so the undo and the backstops still open it."""
        self._closed = True
        try:
            self._chassis.close_tap_gate(self._vif)
        except PlugError:  # refused: nothing changed
            self._closed = False
            raise
        self._timeline.mark(CLOSED, f"{self._vif.tap} on {self._chassis.name}")

    def on_source_stopped(self, stop_ms: float) -> None:
        """The hypervisor's callback once the source stopped (see the module): open now,
        in the caller's thread. A failure is marked, never raised into the driver: the
        backstops open it."""
        self.stop_ms = stop_ms
        self._open_quietly("source STOP")

    def _open_quietly(self, reason: str) -> None:
        try:
            self.open(reason)
        except Exception as e:  # any error: raised into the driver after migrate-continue
            # it would fail a switchover that happened; a backstop opens the gate instead
            self.failure = f"{type(e).__name__}: {e}"
            self._timeline.mark("tap-gate.open-failed", f"{reason}: {self.failure}")

    def open(self, reason: str) -> TapGateState | None:
        """Open the gate if it is closed (else nothing: None; the backstops call this
        too); marks ``tap-gate.opened`` (with its latency after the source's STOP, when
        that is known) if the chassis found it closed. Raises the chassis' error."""
        if not self._closed:
            return None
        found = self._chassis.open_tap_gate(self._vif)
        self._closed = False
        if not found.closed:  # removed by someone else meanwhile, or a recovery's guess
            self._timeline.mark(FOUND_OPEN, f"{reason}: {self._vif.tap} on "
                                f"{self._chassis.name} had no gate left")
            return found
        opened = time.time() * 1000.0
        after = (f"{opened - self.stop_ms:.1f} ms after the source's STOP"
                 if self.stop_ms is not None else "the source's STOP not seen")
        self._timeline.mark(OPENED, f"{reason}; {after}; the gate dropped "
                            f"{found.dropped} frames", at_ms=opened)
        return found


def _stop_signal(ctx: MigrationContext) -> SignalsSourceStop:
    hv = ctx.hypervisor
    if not isinstance(hv, SignalsSourceStop):  # check_gate refused it before; never reached
        raise InvalidMigration(f"{type(hv).__name__} cannot signal the source's stop")
    return hv


def gate_of(ctx: MigrationContext) -> TapGate:
    """The migration's gate (a fresh handle in a recovery: the record knows it was
    closed, the process that closed it is gone)."""
    if ctx.tap_gate is None:  # maybe closed: opening an open gate is a no-op on the chassis
        return TapGate(ctx.chassis[ctx.dst.name], Vif.of(ctx.vm), ctx.timeline, closed=True)
    return ctx.tap_gate


class CloseTapGate(Step):
    """Close the destination TAP's gate right before the network preparation; it opens on
    the source's STOP (see the module)."""

    name = "close-tap-gate"

    def do(self, ctx: MigrationContext) -> None:
        signals = _stop_signal(ctx)
        gate = TapGate(ctx.chassis[ctx.dst.name], Vif.of(ctx.vm), ctx.timeline)
        ctx.tap_gate = gate
        gate.close()
        signals.on_source_stopped(ctx.vm, gate.on_source_stopped)

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"chassis": ctx.dst.name, "tap_gate_closed": ctx.vm.tap}

    def undo(self, ctx: MigrationContext) -> None:
        gate_of(ctx).open("rollback")


class OpenTapGate(Step):
    """Backstop after the switchover (the destination resumed): the gate is open, whether
    or not the source's STOP opened it."""

    name = "open-tap-gate"

    def do(self, ctx: MigrationContext) -> None:
        gate_of(ctx).open("destination RESUME (backstop)")

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"chassis": ctx.dst.name, "tap_gate_opened": ctx.vm.tap}
