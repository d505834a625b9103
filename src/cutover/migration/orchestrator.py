"""The migration orchestrator (Nova's role): validate, compose steps, run, roll back.

``migrate()`` is the one entry point the CLI and the benchmark use. It knows a Site and
the seams (Hypervisor, Plugger); it never imports the lab.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cutover.errors import (
    CutoverError,
    InvalidMigration,
    MigrationAborted,
    RollbackIncomplete,
    SwitchedOverIncomplete,
)
from cutover.guest.base import GuestState, Hypervisor
from cutover.migration.clients import SiteClients
from cutover.migration.context import (
    ACTIVATIONS,
    PRE_ACTIVATIONS,
    MigrationContext,
    MigrationOptions,
)
from cutover.migration.gates import check_gate, steps_for
from cutover.migration.journal import Journal, MigrationEntry
from cutover.migration.steps import Step
from cutover.migration.strategies import strategy
from cutover.migration.timeline import Observer, Timeline
from cutover.network.binding import BindingController
from cutover.site import Site


@dataclass(frozen=True)
class MigrationReport:
    vm: str
    src: str
    dst: str
    strategy: str
    activation: str
    started_ms: float
    migration_ms: float
    ready_wait_ms: float
    evidence: str
    timeline: list[tuple[float, str, str]]
    """(ms since start, event, detail)."""
    detection_latency_ms: float | None = None
    """From the SB row change behind the readiness evidence being written to the
    orchestrator seeing it; None when that row carries no timestamp (``claim``:
    ``Port_Binding`` has none)."""
    gate: str = "before-copy"
    switchover_ms: float | None = None
    """From the start to the destination resuming (the ``switchover`` event): the total
    migration time as a user waits for it, whatever the gate overlapped."""


def validate(site: Site, vm_name: str, dst_name: str, options: MigrationOptions) -> None:
    """Reject a bad request before anything changes."""
    vm = site.vm_named(vm_name)
    site.chassis_named(dst_name)
    chosen = strategy(options.strategy)
    if options.activation not in ACTIVATIONS:
        raise InvalidMigration(
            f"unknown activation {options.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    if chosen.reads_flows:
        direct = [c for c in site.chassis if not c.agent]
        remote = [c.name for c in direct if not c.ovs_remote.startswith("unix:")]
        if remote:
            raise InvalidMigration(
                f"strategy {chosen.name} reads each chassis' OpenFlow tables, but "
                f"{', '.join(remote)} have no agent and are reached over the network; give "
                "them an agent endpoint or use claim or nb-cfg"
            )
        dst = site.chassis_named(dst_name)
        if not dst.agent and not dst.controller_ctl:
            raise InvalidMigration(
                f"strategy {chosen.name} requires the destination's ovn-controller to be "
                f"alive, but the site gives no controller_ctl (its unixctl socket) for "
                f"{dst_name}; add it (or an agent) to the site or use claim"
            )
    dst_ep = site.chassis_named(dst_name)
    if (options.activation in PRE_ACTIVATIONS and not dst_ep.agent
            and not dst_ep.ovs_remote.startswith("unix:")):
        raise InvalidMigration(
            f"--activation {options.activation} waits for {dst_name}'s rarp drop flows to "
            f"go, but {dst_name} has no agent and its br-int is reached over the network; "
            "give it an agent endpoint or use --activation rarp")
    if vm.chassis == dst_name:
        raise InvalidMigration(
            f"{vm_name} already runs on {dst_name}; choose another destination"
        )


def migrate(
    site: Site,
    vm_name: str,
    dst_name: str,
    options: MigrationOptions,
    hypervisor: Hypervisor,
    clients: SiteClients | None = None,
    observers: Sequence[Observer] = (),
    journal: Journal | None = None,
    journal_extra: Mapping[str, Any] | None = None,
) -> MigrationReport:
    """Live-migrate ``vm_name`` to ``dst_name``; on failure roll back and raise
    MigrationAborted (or RollbackIncomplete naming what is left).

    With a ``journal`` every step is recorded before and after its effect, so that
    ``cutover recover`` can finish or undo it from another process after a crash
    (``journal_extra``: what the caller adds to the record, e.g. a stall it injects).
    Call :func:`cutover.migration.recovery.recover` first: an open record of the VM is
    refused here."""
    validate(site, vm_name, dst_name, options)
    check_gate(options, hypervisor)
    clients = clients or SiteClients.connect(site)
    vm = site.vm_named(vm_name)
    src, dst = site.chassis_named(vm.chassis), site.chassis_named(dst_name)
    requested = clients.nb.requested_chassis(vm.lsp)
    if len(requested) == 1 and requested != [src.name]:
        raise InvalidMigration(
            f"port {vm.lsp} has requested-chassis={requested[0]} but the site places "
            f"{vm_name} on {src.name}: the VM was moved outside this site's record (by "
            f"another tool, or 'cutover migrate --config' on a lab's config); run 'cutover "
            f"recover {vm_name}' (in the lab it records where the VM runs), and do not set "
            f"requested-chassis back while the VM runs on {requested[0]}"
        )
    if requested not in ([], [src.name]):
        raise InvalidMigration(
            f"port {vm.lsp} has requested-chassis={','.join(requested)} but {vm_name} runs "
            f"on {src.name}: an earlier migration did not finish and the journal has no "
            f"record of it; run 'cutover recover {vm_name}', or if another tool left it, set "
            f"it back to {src.name}"
        )
    ctx = MigrationContext(
        site=site,
        vm=vm,
        src=src,
        dst=dst,
        options=options,
        binding=BindingController(clients.nb),
        sb=clients.sb,
        chassis=clients.chassis,
        hypervisor=hypervisor,
        readiness=strategy(options.strategy).readiness(clients),
        timeline=Timeline(observers),
    )
    entry = None
    if journal is not None:
        entry = journal.begin(vm.name, vm.lsp, src.name, dst.name, options.strategy,
                              dataclasses.asdict(options),
                              {"requested_chassis": requested}, journal_extra)  # fmt: skip
    run_steps(ctx, steps_for(options), entry)
    if entry is not None:
        entry.finish("completed")
    return _report(ctx)


def run_steps(ctx: MigrationContext, steps: Sequence[Step],
              entry: MigrationEntry | None = None) -> None:
    """Run ``steps`` in order; roll back on failure (see :func:`_fail`). ``entry``: the
    journal record each step's intent and completion go to (intent BEFORE the effect)."""
    done: list[Step] = []
    try:
        for seq, step in enumerate(steps):
            try:
                if entry is not None:
                    entry.intent(seq, step.name, step.changes(ctx))
                step.do(ctx)
                if entry is not None:  # a journal that fails here rolls back too
                    entry.done(seq, step.name)
            except BaseException as e:
                _fail(ctx, step, done, e, entry)
            done.append(step)
    finally:
        if ctx.tap_gate is not None and ctx.tap_gate.closed:  # the last backstop
            try:
                ctx.tap_gate.open("the migration ended")
            except CutoverError as e:
                ctx.timeline.mark("tap-gate.left-closed", f"{type(e).__name__}: {e}")
        if ctx.liveness is not None:
            ctx.liveness.stop()
        _collect_passive(ctx)
        for name, chassis in ctx.chassis.items():  # e.g. verdicts withdrawn in the background
            for failure in chassis.finish_pending():
                ctx.timeline.mark("withdraw-failed", f"{name}: {failure}")


def _fail(ctx: MigrationContext, step: Step, done: list[Step], cause: BaseException,
          entry: MigrationEntry | None = None) -> None:
    """Roll back: undo the failed step itself (it may have half-happened: a transaction
    that timed out but committed, watches armed before a monitor failed) and then every
    done step, in reverse. Undos are idempotent; one that fails is recorded and the rest
    still run. The journal record is closed only after a complete rollback: anything
    else stays open for ``cutover recover``."""
    ctx.timeline.mark("failed", f"{step.name}: {type(cause).__name__}: {cause}")
    if any(s.point_of_no_return for s in done):
        if not isinstance(cause, Exception):
            raise cause
        raise SwitchedOverIncomplete(
            ctx.vm.name, ctx.src.name, ctx.dst.name, step.name, cause
        ) from cause
    leftovers: list[str] = []
    for s in reversed([*done, step]):
        try:
            s.undo(ctx)
        except Exception as e:  # keep undoing: one stuck undo must not strand the rest
            leftovers.append(f"{s.name}: {type(e).__name__}: {e}")
    if entry is not None and not leftovers:
        entry.finish("rolled-back", f"{step.name}: {type(cause).__name__}: {cause}")
    if not isinstance(cause, Exception):  # KeyboardInterrupt & co.: rolled back, re-raise
        raise cause
    if leftovers:
        raise RollbackIncomplete(ctx.vm.name, step.name, cause, leftovers) from cause
    guest = _source_guest(ctx)
    raise MigrationAborted(
        ctx.vm.name, step.name, cause, ctx.src.name, guest.state, guest.detail
    ) from cause


def _source_guest(ctx: MigrationContext) -> GuestState:
    """What runs of the VM on its source after a rollback, so the error says what is true
    (a dead source guest is a common reason to abort). Never raises."""
    try:
        return ctx.hypervisor.guest_state(ctx.vm, ctx.src.name)
    except Exception as e:  # a broken driver must not mask the migration's own error
        return GuestState("unknown", f"the hypervisor could not tell: {type(e).__name__}: {e}")


def _collect_passive(ctx: MigrationContext) -> None:
    for name, watch in ctx.passive:
        watch.cancel()
        if watch.fired and watch.seen_ms is not None:
            ctx.timeline.mark(name, watch.what, at_ms=watch.seen_ms)
    ctx.passive.clear()


def _report(ctx: MigrationContext) -> MigrationReport:
    events = ctx.timeline.events
    end = events[-1].at_ms if events else ctx.timeline.t0_ms
    return MigrationReport(
        vm=ctx.vm.name,
        src=ctx.src.name,
        dst=ctx.dst.name,
        strategy=ctx.options.strategy,
        activation=ctx.options.activation,
        started_ms=ctx.timeline.t0_ms,
        migration_ms=round(end - ctx.timeline.t0_ms, 3),
        ready_wait_ms=round(ctx.ready_wait_ms, 3),
        evidence=ctx.evidence.detail if ctx.evidence else "",
        timeline=ctx.timeline.relative(),
        detection_latency_ms=_detection_latency(ctx),
        gate=ctx.options.gate,
        switchover_ms=next((round(e.at_ms - ctx.timeline.t0_ms, 3) for e in events
                            if e.name == "switchover"), None),
    )


def _detection_latency(ctx: MigrationContext) -> float | None:
    ev = ctx.evidence
    if ev is None or ev.committed_ms is None:
        return None
    return round(ev.seen_ms - ev.committed_ms, 3)  # negative = clock skew, kept visible
