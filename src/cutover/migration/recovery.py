"""Recovery of a journaled migration whose process died: roll back or complete it.

``cutover recover [VM]`` (and the next ``cutover migrate`` of the VM, before anything
else) reads the open records of :mod:`cutover.migration.journal` and, in a fresh process,
rebuilds the migration's step objects from the record (strategy, options, VM, source,
destination) and decides where the crash left it:

- **before the switchover** (the point of no return: no intent recorded for it, or an
  intent but the destination guest does not run): every step that recorded an intent is
  undone, newest first - the same idempotent ``undo`` the in-process rollback runs;
- **after it** (its completion recorded, or its intent and the destination guest runs):
  the steps after it that did not complete are run again (``activate``: the port moves to
  the destination alone; ``cleanup-source``: the old guest and its TAP go).

Either way every chassis is then told to forget the VM's port (agents cancel their
watches, withdraw published readiness keys, end a timed controller pause; the losing side
drops its TAP and OVS port: :meth:`~cutover.chassis.base.Chassis.forget`), a stalled
controller named in the record is resumed, and recovery waits - an SB event, bounded by
the migration's activation timeout - until the port's binding names one chassis only.
Only then is the record closed; anything left raises RecoveryIncomplete and the record
stays open for another try.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cutover.errors import ControllerDown, CutoverError, InvalidMigration, RecoveryIncomplete
from cutover.guest.base import Hypervisor
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationContext, MigrationOptions
from cutover.migration.gates import steps_for
from cutover.migration.journal import Journal, MigrationEntry, MigrationRecord
from cutover.migration.steps import Step
from cutover.migration.strategies import strategy
from cutover.migration.timeline import Timeline
from cutover.network.binding import BindingController
from cutover.ovsdb.sb import BindingState
from cutover.site import Site

BACK = "rolled back"
FORWARD = "completed"


@dataclass(frozen=True)
class RecoveryReport:
    migration_id: int
    vm: str
    src: str
    dst: str
    strategy: str
    direction: str
    """:data:`BACK` or :data:`FORWARD`."""
    runs_on: str
    """Where the VM runs now (the site must say so: the caller saves it)."""
    actions: tuple[str, ...]
    """What recovery did, in order."""
    took_ms: float
    """From reading the record to the port bound to one chassis (wall clock, this
    process; connections and start-up not included)."""

    def describe(self) -> str:
        return (f"migration #{self.migration_id} of {self.vm} {self.src} -> {self.dst} "
                f"({self.strategy}) {self.direction}: {self.vm} runs on {self.runs_on} "
                f"(in {self.took_ms:.0f} ms)")


def recover(site: Site, journal: Journal, hypervisor: Hypervisor, clients: SiteClients,
            vm: str | None = None) -> list[RecoveryReport]:
    """Recover every open migration (of ``vm``), oldest first. InvalidMigration if one of
    them is still being run by a live process; RecoveryIncomplete if one cannot be
    finished (the others before it are)."""
    if vm is not None:
        site.vm_named(vm)  # UnknownVm before anything else
    records = journal.open_migrations(vm)
    running = [r for r in records if r.owner_alive]
    if running:
        raise InvalidMigration(f"{running[0].describe()} is running right now; recover it "
                               "only after that process is gone")  # fmt: skip
    return [_recover(site, journal.entry(r.id), r, hypervisor, clients) for r in records]


def adopt(site: Site, journal: Journal, hypervisor: Hypervisor, clients: SiteClients,
          vm: str) -> RecoveryReport | None:
    """Recover a port that the NB left with ``requested-chassis=A,B`` but that has no open
    journal record (a migration that crashed before the journal existed, or one run by a
    tool that keeps none); None if the port is not in that state.

    Taken as a ``claim`` migration A -> B that may have done every step up to the
    switchover's intent: the destination guest decides (it runs on B: completed; it does
    not: rolled back), and every undo and redo is idempotent, so the steps that never
    happened cost nothing. Only on request (``cutover recover VM``): such a port may
    also be another tool's migration in progress."""
    spec = site.vm_named(vm)
    if journal.open_migrations(vm):
        return None  # the journal knows better
    requested = clients.nb.requested_chassis(spec.lsp)
    if len(requested) != 2:
        return None
    src, dst = (site.chassis_named(c).name for c in requested)
    steps = strategy("claim").steps()
    point = next(i for i, s in enumerate(steps) if s.point_of_no_return)
    entry = journal.begin(vm, spec.lsp, src, dst, "claim",
                          dataclasses.asdict(MigrationOptions(strategy="claim")),
                          {"requested_chassis": [src]},
                          {"adopted": f"requested-chassis={src},{dst} without a record"})
    for seq, step in enumerate(steps[:point + 1]):
        entry.intent(seq, step.name, {"adopted": True})
    (rec,) = journal.open_migrations(vm)
    return _recover(site, entry, rec, hypervisor, clients)


def moved_outside(site: Site, journal: Journal, hypervisor: Hypervisor,
                  clients: SiteClients, vm: str) -> str | None:
    """The chassis ``vm`` demonstrably runs on when that is not where ``site`` places it,
    else None: no open journal record of it, the SB binds its port to that chassis alone
    (no additional chassis), the NB requests that chassis (or none) and the VM's guest
    runs there. A VM moved by another tool, or by ``cutover migrate --config`` on a lab's
    own config (``cutover lab config``), which the lab's record does not follow: the
    caller records the VM there (``cutover recover`` in the lab); nothing in OVN or on a
    chassis is changed."""
    spec = site.vm_named(vm)
    if journal.open_migrations(vm):
        return None  # a half-done migration: the journal decides
    bound = clients.sb.binding(spec.lsp)
    if bound is None or bound.chassis in (None, spec.chassis) or bound.additional:
        return None
    if clients.nb.requested_chassis(spec.lsp) not in ([], [bound.chassis]):
        return None
    there = next((c.name for c in site.chassis if c.name == bound.chassis), None)
    if there is None or not hypervisor.guest_state(spec, there).running:
        return None
    return there


def _recover(site: Site, entry: MigrationEntry, rec: MigrationRecord,
             hypervisor: Hypervisor, clients: SiteClients) -> RecoveryReport:
    started = time.monotonic()
    vm = dataclasses.replace(site.vm_named(rec.vm), chassis=rec.src)
    src, dst = site.chassis_named(rec.src), site.chassis_named(rec.dst)
    options = MigrationOptions(**rec.options)
    ctx = MigrationContext(site=site, vm=vm, src=src, dst=dst, options=options,
                           binding=BindingController(clients.nb), sb=clients.sb,
                           chassis=clients.chassis, hypervisor=hypervisor, readiness=None,
                           timeline=Timeline())  # fmt: skip
    steps = steps_for(options)  # the gate's and the activation's steps too
    forward = past_switchover(rec, steps, ctx)
    leftovers: list[str] = []
    if forward:
        _redo_after_switchover(ctx, entry, rec, steps, leftovers)
    else:
        _undo_started(ctx, entry, rec, steps, leftovers)
    actions = [f"{e.name}: {e.detail}" if e.detail else e.name for e in ctx.timeline.events]
    actions += _forget_everywhere(ctx, rec, forward, leftovers)
    if not leftovers:
        _wait_single_binding(ctx, dst.name if forward else src.name, leftovers, actions)
    direction = FORWARD if forward else BACK
    if leftovers:
        raise RecoveryIncomplete(rec.vm, direction, leftovers)
    entry.finish("recovered-forward" if forward else "recovered-back", "; ".join(actions))
    return RecoveryReport(rec.id, rec.vm, rec.src, rec.dst, rec.strategy, direction,
                          dst.name if forward else src.name, tuple(actions),
                          round((time.monotonic() - started) * 1000.0, 1))  # fmt: skip


def past_switchover(rec: MigrationRecord, steps: Sequence[Step], ctx: MigrationContext
                    ) -> bool:  # fmt: skip
    """Whether the crash came after the point of no return: its completion is recorded,
    or its intent is and the destination guest runs (the crash fell between the resume
    and the journal write)."""
    point = next(s for s in steps if s.point_of_no_return)
    record = rec.step(point.name)
    if record is None or record.state == "undone":
        return False
    if record.state == "done":
        return True
    return ctx.hypervisor.guest_state(ctx.vm, ctx.dst.name).running


def _redo_after_switchover(ctx: MigrationContext, entry: MigrationEntry,
                           rec: MigrationRecord, steps: Sequence[Step],
                           leftovers: list[str]) -> None:
    point = next(i for i, s in enumerate(steps) if s.point_of_no_return)
    for seq, step in list(enumerate(steps))[point + 1:]:
        record = rec.step(step.name)
        if record is not None and record.state == "done":
            continue
        try:
            entry.intent(seq, step.name, step.changes(ctx))
            step.do(ctx)
            entry.done(seq, step.name)
        except CutoverError as e:
            leftovers.append(f"{step.name}: {type(e).__name__}: {e}")
            return  # the later steps assume this one (cleanup after activation)


def _undo_started(ctx: MigrationContext, entry: MigrationEntry, rec: MigrationRecord,
                  steps: Sequence[Step], leftovers: list[str]) -> None:
    started = set(rec.started())
    for seq, step in reversed(list(enumerate(steps))):
        if step.name not in started:
            continue
        try:
            step.undo(ctx)
            entry.undone(seq)
        except CutoverError as e:  # keep undoing: one stuck undo must not strand the rest
            leftovers.append(f"{step.name}: {type(e).__name__}: {e}")


def _forget_everywhere(ctx: MigrationContext, rec: MigrationRecord, forward: bool,
                       leftovers: list[str]) -> list[str]:
    """Every chassis drops what it holds for the port; the side the VM left drops its TAP
    too. A controller the record says was stalled is resumed."""
    actions = []
    losing = ctx.src.name if forward else ctx.dst.name
    for name, chassis in ctx.chassis.items():
        try:
            cleaned = chassis.forget(ctx.vm.lsp, ctx.vm.tap if name == losing else None)
        except CutoverError as e:
            leftovers.append(f"{name}: could not forget {ctx.vm.lsp}: {type(e).__name__}: {e}")
            continue
        actions += [f"{name}: removed {c}" for c in cleaned]
    stall = rec.extra.get("stall")
    stalled = stall.get("chassis") if isinstance(stall, dict) else None
    if isinstance(stalled, str) and stalled in ctx.chassis:
        try:
            ctx.chassis[stalled].resume_controller()
            actions.append(f"{stalled}: ovn-controller resumed (stalled by the migration)")
        except CutoverError as e:
            leftovers.append(f"{stalled}: ovn-controller may still be paused: {e}")
    return actions


def _wait_single_binding(ctx: MigrationContext, owner: str, leftovers: list[str],
                         actions: list[str]) -> None:
    """Until the SB binds the port to ``owner`` alone (event-driven, bounded). A claim of
    the other chassis that its dead controller cannot release is removed here."""
    lsp = ctx.vm.lsp

    def single(b: BindingState) -> bool:
        return b.chassis == owner and not b.additional and not b.requested_additional

    watch = ctx.sb.watch_binding(lsp, single, f"{owner} to be the only chassis")
    try:
        try:
            watch.wait(ctx.options.activation_timeout_s)
            return
        except CutoverError as e:
            timeout = e
        other = ctx.dst.name if owner == ctx.src.name else ctx.src.name
        try:
            ctx.chassis[other].confirm_controller("recovery")
        except ControllerDown:
            if ctx.sb.release_additional(lsp, other):
                actions.append(f"sb.claim.released: {other}: its controller is down")
                return
        leftovers.append(f"SB binding of {lsp}: {timeout}")
    finally:
        watch.cancel()
