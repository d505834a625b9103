"""Migration steps: small objects with ``do`` and ``undo``.

The orchestrator runs ``do`` in order and, when one fails, runs ``undo`` of the steps
already done in reverse, so a failed migration leaves the VM running on its source with
its network intact and no destination TAP, OVS port or extra requested-chassis. A step
marked ``point_of_no_return`` (the switchover) ends that: after it, the VM runs on the
destination and failures are reported, not rolled back.
"""

from __future__ import annotations

import time
from typing import Any

from cutover.chassis.base import Vif
from cutover.errors import ControllerDown, CutoverError, MigrationError, PlugError
from cutover.migration.context import PRE_ACTIVATIONS, MigrationContext
from cutover.migration.liveness import Liveness
from cutover.ovsdb.sb import binding_state


class Step:
    name = "step"
    point_of_no_return = False

    def do(self, ctx: MigrationContext) -> None:
        raise NotImplementedError

    def undo(self, ctx: MigrationContext) -> None:
        """Default: nothing to undo."""

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        """What ``do`` is about to change, as plain data: journaled before the effect
        (migration/journal.py), so a fresh process can undo or redo it after a crash."""
        return {}

    def __repr__(self) -> str:
        return self.name


class PlugDestination(Step):
    """nova-compute + os-vif on the destination: TAP and OVS port for the VM's VIF."""

    name = "plug-destination"

    def do(self, ctx: MigrationContext) -> None:
        ctx.timeline.mark("plug.start", ctx.dst.name)
        ctx.chassis[ctx.dst.name].plug(Vif.of(ctx.vm))
        ctx.timeline.mark("plug.done", f"{ctx.vm.tap} on {ctx.dst.name}")

    def undo(self, ctx: MigrationContext) -> None:
        try:
            ctx.chassis[ctx.dst.name].unplug(Vif.of(ctx.vm))
        except CutoverError as e:
            raise PlugError(
                f"TAP {ctx.vm.tap} and its OVS port on {ctx.dst.name}'s "
                f"{ctx.dst.integration_bridge} are left ({e}); on {ctx.dst.name}: "
                f"ovs-vsctl --if-exists del-port {ctx.vm.tap}; ip link del {ctx.vm.tap}"
            ) from e
        ctx.timeline.mark("unplug.destination", ctx.dst.name)

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"chassis": ctx.dst.name, "tap": ctx.vm.tap, "ovs_port": ctx.vm.tap,
                "bridge": ctx.dst.integration_bridge}


class StartIncoming(Step):
    """The destination hypervisor starts the incoming guest (QEMU ``-incoming``)."""

    name = "start-incoming"

    def do(self, ctx: MigrationContext) -> None:
        ctx.hypervisor.prepare_destination(ctx.vm, ctx.dst)
        ctx.timeline.mark("incoming.started", ctx.dst.name)

    def undo(self, ctx: MigrationContext) -> None:
        ctx.hypervisor.abort(ctx.vm, ctx.dst)
        ctx.timeline.mark("guest.aborted", f"running on {ctx.src.name}")

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"incoming_guest": f"{ctx.vm.name}@{ctx.dst.name}"}


class ArmReadiness(Step):
    """Register the readiness waits (OVSDB events, OpenFlow monitors) right after the
    plug: before the NB transaction that can make them true, so no event is missed, and
    early enough that the monitor processes are up while the incoming guest starts rather
    than on the critical path once the destination installs its flows."""

    name = "arm-readiness"

    def do(self, ctx: MigrationContext) -> None:
        assert ctx.readiness is not None
        readiness = ctx.readiness
        readiness.arm(ctx.vm, ctx.src, ctx.dst)
        vital = readiness.vital()
        if vital:

            def died(down: ControllerDown) -> None:
                ctx.timeline.mark("controller.down", f"{down.chassis}: {down.reason}")
                readiness.interrupt(down)

            ctx.liveness = Liveness(ctx.chassis, vital, died)  # ControllerDown if one is dead
        ctx.timeline.mark(
            "ready.armed",
            f"{readiness.name}; controllers watched: "
            f"{', '.join(ctx.liveness.names) if ctx.liveness else 'none'}",
        )

    def undo(self, ctx: MigrationContext) -> None:
        if ctx.readiness is not None:  # None in a recovery: the agents are told to forget
            ctx.readiness.disarm()
        if ctx.liveness is not None:
            ctx.liveness.stop()

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"watches_on": sorted(ctx.chassis), "published_keys_of": ctx.vm.lsp}


class PrepareNetwork(Step):
    """Neutron: ``requested-chassis=src,dst`` (+ activation strategy; ``pre`` sets rarp)."""

    name = "prepare-network"

    def do(self, ctx: MigrationContext) -> None:
        ctx.prepare_started_ms = time.time() * 1000.0
        if ctx.options.activation in ("rarp", *PRE_ACTIVATIONS):
            dst = ctx.dst.name
            ctx.passive.append(
                (
                    "activated",
                    ctx.sb.watch_binding(
                        ctx.vm.lsp, lambda b: dst in b.activated, f"activation on {dst}"
                    ),
                )
            )
        # "pre" keeps rarp (nothing cloned to the destination) until PreActivate lifts it
        activation = {"none": None, "pre": "rarp", "pre-gated": "rarp"}.get(
            ctx.options.activation, ctx.options.activation)
        ctx.binding.prepare(ctx.vm.lsp, ctx.src.name, ctx.dst.name, activation)
        ctx.timeline.mark(
            "network.prepared", f"requested-chassis={ctx.src.name},{ctx.dst.name}"
        )

    def undo(self, ctx: MigrationContext) -> None:
        ctx.binding.revert(ctx.vm.lsp, ctx.src.name)
        ctx.timeline.mark("network.reverted", f"requested-chassis={ctx.src.name}")
        dead = ctx.liveness.dead() if ctx.liveness is not None else []
        if any(d.chassis == ctx.dst.name for d in dead) and ctx.sb.release_additional(
            ctx.vm.lsp, ctx.dst.name
        ):
            # the dead controller cannot release its claim; nobody else would
            ctx.timeline.mark("sb.claim.released", f"{ctx.dst.name}: its controller is dead")

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"requested_chassis": [ctx.src.name, ctx.dst.name],
                "activation_strategy": ctx.options.activation,
                "sb_additional_chassis": ctx.dst.name}


class WaitReady(Step):
    """Block until the strategy's readiness check holds (every wait has a timeout).

    ``ready_wait_ms`` counts from the start of the network preparation (the transaction
    that makes readiness possible) to the evidence, so a claim that lands while that
    transaction is still being confirmed is not reported as a 0 ms wait."""

    name = "wait-ready"

    def do(self, ctx: MigrationContext) -> None:
        assert ctx.readiness is not None
        started = time.time() * 1000.0
        ctx.timeline.mark("ready.wait", ctx.readiness.name)
        evidence = ctx.readiness.wait(ctx.options.ready_timeout_s)
        ctx.evidence = evidence
        since = ctx.prepare_started_ms if ctx.prepare_started_ms is not None else started
        ctx.ready_wait_ms = max(0.0, evidence.seen_ms - since)
        for name, at_ms, detail in evidence.marks:
            ctx.timeline.mark(name, detail, at_ms=at_ms)
        ctx.timeline.mark(f"{evidence.check}.seen", evidence.detail, at_ms=evidence.seen_ms)
        if ctx.liveness is not None:
            ctx.liveness.confirm()  # flows of a controller that died meanwhile prove nothing
        ctx.timeline.mark("ready", evidence.check)


class CopyMemory(Step):
    name = "copy-memory"

    def do(self, ctx: MigrationContext) -> None:
        ctx.timeline.mark("copy.start")
        ctx.hypervisor.copy_memory(ctx.vm, ctx.dst, ctx.options.copy_ms)
        ctx.timeline.mark("copy.done")


class PauseSource(Step):
    """Stop the source; the stop-and-copy window follows before the destination runs
    (the emulator models it as ``pause_ms``; QEMU's is real)."""

    name = "pause-source"

    def do(self, ctx: MigrationContext) -> None:
        at = ctx.hypervisor.pause_source(ctx.vm, ctx.options.pause_ms)
        ctx.timeline.mark("source.paused", ctx.src.name, at_ms=at)

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"paused_guest": f"{ctx.vm.name}@{ctx.src.name}"}


class ConfirmReady(Step):
    """Right before the source is paused: the controllers the readiness depends on still
    answer (a fresh round trip each, through their agents), and the destination still
    holds its claim.

    A controller that died after the readiness evidence leaves its flows behind; switching
    over into it would be served by stale flows and the activation would never complete.
    Failing here rolls back instead, with the source still running. It runs BEFORE the
    pause because a round trip to a node's agent can take tens of ms on a busy node
    (measured: L2 load on the destination), and every ms after the pause is blackout; the
    pause itself is covered by :class:`StillAlive`."""

    name = "confirm-ready"

    def do(self, ctx: MigrationContext) -> None:
        if ctx.liveness is None:
            return
        ctx.liveness.confirm()
        state = ctx.sb.binding(ctx.vm.lsp)
        if state is None or not state.claimed_by(ctx.dst.name):
            raise MigrationError(
                f"{ctx.dst.name} no longer holds {ctx.vm.lsp} right before the switchover "
                f"({state or 'no Port_Binding'}); not switching over"
            )
        ctx.timeline.mark("ready.confirmed", ", ".join(ctx.liveness.names))


class StillAlive(Step):
    """The last check before the point of no return, with the source paused: no watched
    controller has died since :class:`ConfirmReady` (its death would have arrived as an
    event). Reads only what the watches already delivered: no I/O, so it adds nothing to
    the blackout."""

    name = "still-alive"

    def do(self, ctx: MigrationContext) -> None:
        if ctx.liveness is None:
            return
        for down in ctx.liveness.dead():
            raise down


class Switchover(Step):
    """The destination resumes and announces itself (RARPs): the VM now lives there."""

    name = "switchover"
    point_of_no_return = True

    def do(self, ctx: MigrationContext) -> None:
        at = ctx.hypervisor.switchover(ctx.vm, ctx.dst)
        ctx.timeline.mark("switchover", ctx.dst.name, at_ms=at)

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"running_guest": f"{ctx.vm.name}@{ctx.dst.name}"}


class Activate(Step):
    """Neutron activates the destination binding: ``requested-chassis=dst``; wait until the
    SB binding's main chassis is the destination."""

    name = "activate"

    def do(self, ctx: MigrationContext) -> None:
        dst = ctx.dst.name
        bound = ctx.sb.watch_binding(
            ctx.vm.lsp,
            lambda b: b.chassis == dst and not b.additional,
            f"{dst} to become the only chassis",
        )
        ctx.binding.activate(ctx.vm.lsp, dst)
        ctx.timeline.mark("activation.requested", f"requested-chassis={dst}")
        try:
            row, seen = bound.wait(ctx.options.activation_timeout_s)
        except Exception as e:
            raise MigrationError(
                f"{ctx.vm.name} runs on {dst} but its port did not move there: {e}"
            ) from e
        ctx.timeline.mark("bound", str(binding_state(row)), at_ms=seen)

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"requested_chassis": [ctx.dst.name]}


class CleanupSource(Step):
    """Nova's post-live-migration on the source: stop the old guest, unplug its VIF."""

    name = "cleanup-source"

    def do(self, ctx: MigrationContext) -> None:
        ctx.hypervisor.finish_source(ctx.vm)
        ctx.chassis[ctx.src.name].unplug(Vif.of(ctx.vm))
        ctx.timeline.mark("cleanup.done", ctx.src.name)

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"stopped_guest": f"{ctx.vm.name}@{ctx.src.name}", "chassis": ctx.src.name,
                "tap": ctx.vm.tap}
