"""The migration orchestrator (Nova's role): validate, compose steps, run, roll back.

``migrate()`` is the one entry point the CLI and the benchmark use. It knows a Site and
the seams (Hypervisor, Plugger); it never imports the lab.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cutover.compute.plugger import OvsTapPlugger, Plugger
from cutover.errors import (
    InvalidMigration,
    MigrationAborted,
    RollbackIncomplete,
    SwitchedOverIncomplete,
)
from cutover.guest.base import Hypervisor
from cutover.migration.context import (
    ACTIVATIONS,
    FLOW_STRATEGIES,
    STRATEGIES,
    MigrationContext,
    MigrationOptions,
)
from cutover.migration.steps import Step
from cutover.migration.strategies import build_steps, readiness_for
from cutover.migration.timeline import Observer, Timeline
from cutover.network.binding import BindingController
from cutover.ovsdb.nb import NbClient
from cutover.ovsdb.sb import SbClient
from cutover.ovsdb.vswitch import VswitchClient
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


@dataclass
class SiteClients:
    """The OVSDB connections a migration uses: NB, SB and every chassis' vswitch DB."""

    nb: NbClient
    sb: SbClient
    vswitch: dict[str, VswitchClient]

    @classmethod
    def connect(cls, site: Site) -> SiteClients:
        return cls(
            nb=NbClient(site.nb_remote),
            sb=SbClient(site.sb_remote),
            vswitch={c.name: VswitchClient(c.name, c.ovs_remote) for c in site.chassis},
        )


def validate(site: Site, vm_name: str, dst_name: str, options: MigrationOptions) -> None:
    """Reject a bad request before anything changes."""
    vm = site.vm_named(vm_name)
    site.chassis_named(dst_name)
    if options.strategy not in STRATEGIES:
        raise InvalidMigration(
            f"unknown strategy {options.strategy!r}; choose one of {', '.join(STRATEGIES)}"
        )
    if options.activation not in ACTIVATIONS:
        raise InvalidMigration(
            f"unknown activation {options.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    if options.strategy in FLOW_STRATEGIES:
        local = [c.name for c in site.chassis if not c.ovs_remote.startswith("unix:")]
        if local:
            raise InvalidMigration(
                f"strategy {options.strategy} reads each chassis' OpenFlow tables with "
                f"ovs-ofctl next to its unix: OVSDB socket, but {', '.join(local)} "
                "are reached over the network; use claim or nb-cfg for them"
            )
        if not site.chassis_named(dst_name).controller_ctl:
            raise InvalidMigration(
                f"strategy {options.strategy} requires the destination's ovn-controller to be "
                f"alive, but the site gives no controller_ctl (its unixctl socket) for "
                f"{dst_name}; add it to the site or use claim"
            )
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
    plugger: Plugger | None = None,
    observers: Sequence[Observer] = (),
) -> MigrationReport:
    """Live-migrate ``vm_name`` to ``dst_name``; on failure roll back and raise
    MigrationAborted (or RollbackIncomplete naming what is left)."""
    validate(site, vm_name, dst_name, options)
    clients = clients or SiteClients.connect(site)
    vm = site.vm_named(vm_name)
    src, dst = site.chassis_named(vm.chassis), site.chassis_named(dst_name)
    requested = clients.nb.requested_chassis(vm.lsp)
    if requested not in ([], [src.name]):
        raise InvalidMigration(
            f"port {vm.lsp} has requested-chassis={','.join(requested)} but {vm_name} runs "
            f"on {src.name}: an earlier migration did not finish; set it back to {src.name}"
        )
    ctx = MigrationContext(
        site=site,
        vm=vm,
        src=src,
        dst=dst,
        options=options,
        binding=BindingController(clients.nb),
        sb=clients.sb,
        plugger=plugger or OvsTapPlugger(clients.vswitch),
        hypervisor=hypervisor,
        readiness=readiness_for(options.strategy, clients, site),
        timeline=Timeline(observers),
    )
    run_steps(ctx, build_steps(options.strategy))
    return _report(ctx)


def run_steps(ctx: MigrationContext, steps: Sequence[Step]) -> None:
    done: list[Step] = []
    try:
        for step in steps:
            try:
                step.do(ctx)
            except BaseException as e:
                _fail(ctx, step, done, e)
            done.append(step)
    finally:
        if ctx.liveness is not None:
            ctx.liveness.stop()
        _collect_passive(ctx)


def _fail(ctx: MigrationContext, step: Step, done: list[Step], cause: BaseException) -> None:
    """Roll back: undo the failed step itself (it may have half-happened: a transaction
    that timed out but committed, watches armed before a monitor failed) and then every
    done step, in reverse. Undos are idempotent; one that fails is recorded and the rest
    still run."""
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
    if not isinstance(cause, Exception):  # KeyboardInterrupt & co.: rolled back, re-raise
        raise cause
    if leftovers:
        raise RollbackIncomplete(ctx.vm.name, step.name, cause, leftovers) from cause
    raise MigrationAborted(ctx.vm.name, step.name, cause) from cause


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
    )


def _detection_latency(ctx: MigrationContext) -> float | None:
    ev = ctx.evidence
    if ev is None or ev.committed_ms is None:
        return None
    return round(ev.seen_ms - ev.committed_ms, 3)  # negative = clock skew, kept visible
