"""Gates: where the readiness wait sits in a migration, and the steps each gate runs.

before-copy          what Nova does: wait for readiness, then copy memory. Total time =
                     ready-wait + copy; the source runs all along; the guest pause is the
                     hypervisor's own stop-and-copy.
before-switchover    start the copy at once with QEMU's ``pause-before-switchover`` and wait
                     for readiness while it runs; ``migrate-continue`` only once readiness
                     holds. Total time = max(ready-wait, copy); but QEMU stops the source
                     when it enters ``pre-switchover``, so if readiness comes after the copy
                     every millisecond held there is blackout (guest pause = hold + switch).
converge-when-ready  the copy starts at once too, but QEMU is kept from converging while not
                     ready (downtime-limit 0, and on QEMU 7.2 a trickle of bandwidth at the
                     end of the pass: :meth:`cutover.guest.qemu.QemuHypervisor.keep_held`),
                     so the source keeps RUNNING while the network is not ready; once it is,
                     the real limits are set and QEMU converges as usual. Total time =
                     max(ready-wait, copy) + the tail of the pass held back; guest
                     pause = the ordinary stop-and-copy.

Every gate keeps the readiness timeout and rolls back the same way: ``migrate_cancel``
resumes the source from any pre-copy state, ``pre-switchover`` included
(:class:`StartCopy`'s undo). The overlapping gates need a hypervisor that copies in the
background (:class:`~cutover.guest.base.OverlapsCopy`, the QEMU driver); :func:`check_gate`
refuses the others before anything is built.
"""

from __future__ import annotations

import threading
from typing import Any

from cutover.errors import InvalidMigration
from cutover.guest.base import Hypervisor, OverlapsCopy, SignalsSourceStop
from cutover.migration.context import GATES, PRE_ACTIVATIONS, MigrationContext, MigrationOptions
from cutover.migration.preactivation import PreActivate
from cutover.migration.steps import (
    Activate,
    ArmReadiness,
    CleanupSource,
    ConfirmReady,
    CopyMemory,
    PauseSource,
    PlugDestination,
    PrepareNetwork,
    StartIncoming,
    Step,
    StillAlive,
    Switchover,
    WaitReady,
)
from cutover.migration.strategies import strategy
from cutover.migration.tap_gate import CloseTapGate, OpenTapGate

OVERLAPPING = ("before-switchover", "converge-when-ready")


def check_gate(options: MigrationOptions, hypervisor: Hypervisor) -> None:
    """InvalidMigration for a gate or activation this strategy or hypervisor cannot do."""
    check_combination(options.strategy, options.gate, options.activation,
                      isinstance(hypervisor, OverlapsCopy), type(hypervisor).__name__,
                      signals_stop=isinstance(hypervisor, SignalsSourceStop))


def check_combination(strategy_name: str, gate: str, activation: str, overlaps: bool,
                      guests: str = "these", signals_stop: bool = False) -> None:
    """InvalidMigration unless ``strategy_name`` can run with ``gate`` and ``activation`` on
    guests that can (``overlaps``) or cannot copy memory in the background, and that can
    (``signals_stop``) or cannot report the source's stop as an event."""
    chosen = strategy(strategy_name)
    waits = chosen.name != "legacy"  # the only strategy without readiness or prepare
    if gate not in GATES:
        raise InvalidMigration(f"unknown gate {gate!r}; choose one of {', '.join(GATES)}")
    if gate != "before-copy" and not waits:
        raise InvalidMigration(
            f"strategy {chosen.name} waits for nothing, so --gate {gate} has nothing "
            "to overlap; use a waiting strategy (claim, nb-cfg, port-ready, path-ready) or "
            "--gate before-copy")
    if activation in PRE_ACTIVATIONS and not waits:
        raise InvalidMigration(
            f"--activation {activation} activates the destination's additional binding, but "
            f"strategy {chosen.name} never makes one; use a waiting strategy or "
            "--activation rarp")
    if activation == "pre-gated" and not signals_stop:
        raise InvalidMigration(
            f"--activation pre-gated opens the destination TAP's gate when the source's "
            f"vCPUs stop, but {guests} guests cannot report that as an event (the emulated "
            "guest has no vCPUs; the libvirt driver does not read QEMU's STOP); use "
            "--guest qemu or --activation pre")
    if gate in OVERLAPPING and not overlaps:
        raise InvalidMigration(
            f"--gate {gate} overlaps the readiness wait with the memory copy, but "
            f"{guests} guests cannot copy in the background (the emulated guest only "
            "models the copy as a wait; libvirt drives pause-before-switchover itself); "
            "use --guest qemu or --gate before-copy")


def steps_for(options: MigrationOptions) -> list[Step]:
    """The strategy's steps arranged for ``options.gate`` and ``options.activation``."""
    chosen = strategy(options.strategy)
    if chosen.name == "legacy":
        return chosen.steps()
    head: list[Step] = [PlugDestination(), ArmReadiness(), StartIncoming(), PrepareNetwork()]
    tail: list[Step] = [PauseSource(), StillAlive(), Switchover(), Activate(), CleanupSource()]
    pre: list[Step] = [PreActivate()] if options.activation in PRE_ACTIVATIONS else []
    if options.activation == "pre-gated":
        # closed before the network preparation: the destination's claim already lets
        # frames through before the rarp blocks are installed (measured,
        # migration/tap_gate.py); after the incoming guest's start, by when ovs-vswitchd
        # has opened the port (the close waits for that). Opened on the source's STOP,
        # with a backstop right after the RESUME
        head = [*head[:-1], CloseTapGate(), head[-1]]
        tail = [PauseSource(), StillAlive(), Switchover(), OpenTapGate(), Activate(),
                CleanupSource()]  # fmt: skip
    if options.gate == "before-copy":
        # QEMU's copy ends in pre-switchover with the source stopped: pre-activating after
        # it would put the activation on the paused source's critical path
        return [*head, WaitReady(), *pre, CopyMemory(), ConfirmReady(), *tail]
    if options.gate == "before-switchover":
        return [*head, StartCopy(hold=False), WaitReady(), ConfirmReady(), *pre, FinishCopy(),
                *tail]  # fmt: skip
    if not pre:
        return [*head, StartCopy(hold=True), HeldWaitReady(), ConfirmReady(),
                ReleaseConvergence(), FinishCopy(), *tail]  # fmt: skip
    # pre-activation at QEMU's last pass, the copy released the moment the blocks are gone:
    # the destination TAP then queues cloned traffic only for the rest of that pass and
    # the stop-and-copy (docs/switchover.md, the TAP queue)
    return [*head, StartCopy(hold=True), HeldWaitReady(), AwaitLastPass(), ConfirmReady(),
            PreActivate(then=ReleaseConvergence()), FinishCopy(), *tail]  # fmt: skip


def _overlapping(ctx: MigrationContext) -> OverlapsCopy:
    hv = ctx.hypervisor
    if not isinstance(hv, OverlapsCopy):  # check_gate refused it before; never reached
        raise InvalidMigration(f"{type(hv).__name__} cannot copy in the background")
    return hv


class StartCopy(Step):
    """Start the pre-copy and go on at once (the readiness wait overlaps it)."""

    name = "start-copy"

    def __init__(self, hold: bool) -> None:
        self.hold = hold

    def do(self, ctx: MigrationContext) -> None:
        ctx.timeline.mark("copy.start", "convergence held until ready" if self.hold else "")
        _overlapping(ctx).start_copy(ctx.vm, ctx.dst, hold_convergence=self.hold)

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"migration": f"{ctx.vm.name}@{ctx.src.name} -> {ctx.dst.name}",
                "convergence_held": self.hold}

    def undo(self, ctx: MigrationContext) -> None:
        """``migrate_cancel`` (QEMU resumes the source, from ``pre-switchover`` too), the
        incoming guest stopped: the same abort :class:`StartIncoming` undoes with, run
        first so the source is running again before the network is reverted."""
        ctx.hypervisor.abort(ctx.vm, ctx.dst)
        ctx.timeline.mark("copy.cancelled", f"running on {ctx.src.name}")


class HeldWaitReady(WaitReady):
    """:class:`WaitReady` in a worker thread while this one keeps QEMU's copy from
    converging (polling it: QEMU has no event for "the pass is nearly done")."""

    def do(self, ctx: MigrationContext) -> None:
        hv = _overlapping(ctx)
        done = threading.Event()
        failure: list[BaseException] = []

        def wait() -> None:
            try:
                WaitReady.do(self, ctx)
            except BaseException as e:  # handed to the orchestrator's thread below
                failure.append(e)
            finally:
                done.set()

        worker = threading.Thread(target=wait, name=f"ready-{ctx.vm.name}", daemon=True)
        worker.start()
        try:
            # the readiness wait has its own timeout; this bound only catches a stuck worker
            hv.keep_held(ctx.vm, done, ctx.options.ready_timeout_s + 5.0)
        except BaseException as e:
            assert ctx.readiness is not None
            ctx.readiness.interrupt(e)
            worker.join(5.0)
            raise
        worker.join()
        if failure:
            raise failure[0]


class AwaitLastPass(Step):
    """``converge-when-ready`` with pre-activation: ready early, keep the copy going (held)
    until its last pass, so that the pre-activation that follows opens the destination
    to cloned traffic as late as it can while the source still runs."""

    name = "await-last-pass"

    def do(self, ctx: MigrationContext) -> None:
        _overlapping(ctx).hold_to_last_pass(ctx.vm)
        ctx.timeline.mark("copy.last-pass")


class ReleaseConvergence(Step):
    """Readiness holds (and the destination is pre-activated, if asked): let QEMU converge
    with its real downtime limit; the source runs until its ordinary stop-and-copy."""

    name = "release-convergence"

    def do(self, ctx: MigrationContext) -> None:
        _overlapping(ctx).release_convergence(ctx.vm)
        ctx.timeline.mark("copy.released")


class FinishCopy(Step):
    """Wait for the end of the pre-copy (QEMU: ``pre-switchover``, source stopped)."""

    name = "finish-copy"

    def do(self, ctx: MigrationContext) -> None:
        _overlapping(ctx).wait_copied(ctx.vm, ctx.dst)
        ctx.timeline.mark("copy.done")
