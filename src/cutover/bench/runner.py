"""Run measured migrations under a prober and turn each into a RunResult.

One run: the client guest on a third chassis probes the VM at a fixed interval; the VM
migrates from its home chassis to the other VM chassis (strategy, activation, stall as
asked); the prober keeps going until the network has settled; the samples give the
client-visible blackout. Between runs the VM goes home again by an unmeasured migration,
so every measured run has the same direction and the same (possibly loaded) destination.
Strategies alternate within a round so that a noisy neighbour hurts all of them alike.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cutover import bounds
from cutover.bench.environment import describe_environment, lab_ovn, site_environment
from cutover.bench.faults import (
    STALL_TRIGGERS,
    FaultPlan,
    FaultTarget,
    StallPlan,
    end_injections,
)
from cutover.bench.leftovers import scan as scan_leftovers
from cutover.bench.preconditions import (
    BASELINE_STEADY,
    BASELINE_TIMEOUT_S,
    check_baseline,
    check_site,
    unmeasurable,
)
from cutover.bench.results import BenchResult, RunResult, TimelineEvent
from cutover.bench.sb_monitor import SbMonitor, SbWrites
from cutover.errors import (
    CutoverError,
    GuestError,
    InputError,
    LabError,
    MeasurementError,
    MigrationAborted,
    MigrationError,
    SwitchedOverIncomplete,
)
from cutover.guest.base import Hypervisor, ReportsMigration
from cutover.lab.load import LOAD_LEVELS, parse_load
from cutover.migration.clients import SiteClients
from cutover.migration.context import ACTIVATIONS, GATES, MigrationOptions
from cutover.migration.orchestrator import MigrationReport, migrate
from cutover.migration.strategies import STRATEGY_NAMES
from cutover.probe.analysis import summarize
from cutover.probe.client import Prober
from cutover.site import Site, VmSpec

WARMUP_S = 0.3
SETTLE_S = 1.0
RETURN_COPY_MS = 50.0


@dataclass(frozen=True)
class Condition:
    """What the network looks like during a run: control-plane load, a stalled
    ovn-controller, and OVN's activation strategy."""

    load: str = "L0"
    stall: str = "none"
    activation: str = "rarp"
    fault: str = "none"
    """``--fault KIND[:MS]`` (:data:`cutover.bench.faults.FAULT_KINDS`)."""

    def __str__(self) -> str:
        fault = f" fault={self.fault}" if self.fault != "none" else ""
        return f"load={self.load} stall={self.stall} activation={self.activation}{fault}"

    def checked(self) -> Condition:
        """The same condition, normalized; InputError on a bad value."""
        if self.activation not in ACTIVATIONS:
            raise InputError(
                f"activation {self.activation!r}: choose one of {', '.join(ACTIVATIONS)}"
            )
        return Condition(parse_load(self.load), StallPlan.parse(self.stall).spec,
                         self.activation, FaultPlan.parse(self.fault).spec)


MATRIX = (
    Condition(),
    Condition(load="L2"),
    Condition(stall="dst:2000"),
    Condition(stall="peer:2000"),
)
"""``bench --matrix``: unloaded, loaded (L2), a busy destination, a busy peer."""


@dataclass(frozen=True)
class BenchPlan:
    strategies: tuple[str, ...]
    conditions: tuple[Condition, ...] = (Condition(),)
    runs: int = 3
    vm: str = "vm1"
    client: str = "client"
    probe_interval_ms: float = 2.0
    copy_ms: float = 500.0
    pause_ms: float = 30.0
    ready_timeout_s: float = 30.0
    guest: str = "emulated"
    activation_timeout_s: float = 30.0
    params: dict[str, object] = field(default_factory=dict)
    stall_from: str = "plug"
    """When a stall starts: at the destination plug or at the network preparation
    (bench/faults.py STALL_TRIGGERS)."""
    gates: tuple[str, ...] = ("before-copy",)
    """Where readiness gates the migration (migration/gates.py); each strategy runs with
    each gate, alternating within a round like the strategies."""

    def __post_init__(self) -> None:
        """Refuse a plan that cannot run (InputError) before any lab is touched."""
        if not self.strategies:
            raise InputError("a bench needs at least one strategy")
        unknown = [s for s in self.strategies if s not in STRATEGY_NAMES]
        if unknown:
            raise InputError(
                f"unknown strategy {', '.join(unknown)}; choose from {', '.join(STRATEGY_NAMES)}"
            )
        if self.stall_from not in STALL_TRIGGERS:
            raise InputError(f"--stall-from {self.stall_from!r}: choose one of "
                             f"{', '.join(STALL_TRIGGERS)}")
        unknown = [g for g in self.gates if g not in GATES]
        if unknown or not self.gates:
            raise InputError(f"unknown gate {', '.join(unknown) or '(none given)'}; choose "
                             f"from {', '.join(GATES)}")
        for what, values in (("strategy", self.strategies), ("condition", self.conditions),
                             ("gate", self.gates)):
            dup = sorted({str(v) for v in values if values.count(v) > 1})
            if dup:
                raise InputError(f"{what} given twice: {', '.join(dup)}; give each once")
        bounds.check(bounds.RUNS, self.runs)
        bounds.check(bounds.INTERVAL_MS, self.probe_interval_ms)
        MigrationOptions(copy_ms=self.copy_ms, pause_ms=self.pause_ms,
                         ready_timeout_s=self.ready_timeout_s,
                         activation_timeout_s=self.activation_timeout_s)  # fmt: skip


SiteStore = Callable[[Site], None]
"""Persists the site after a VM moved (the lab rewrites its site.json)."""
LoadApplier = Callable[[str, str], Site]
"""Raise the lab's load to a level on a chassis; returns the updated site."""
Progress = Callable[[str], None]


def run_bench(
    site: Site,
    plan: BenchPlan,
    hypervisor: Hypervisor,
    save_site: SiteStore,
    apply_load: LoadApplier,
    progress: Progress = lambda _msg: None,
    per_round: Sequence[Callable[[int], RunResult]] = (),
    faults: FaultTarget | None = None,
    leftover_checks: Sequence[Callable[[], list[str]]] = (),
) -> BenchResult:
    """Measure ``plan``. ``per_round`` runs once per round after the strategies (given the
    round's index), so extra measurements such as ``bench --floor`` share the noise.
    ``faults``: what ``--fault`` acts on (the lab); ``leftover_checks``: extra parts of the
    leftover scan run after every measured migration (the lab's processes)."""
    conditions = sorted(
        (c.checked() for c in plan.conditions), key=lambda c: LOAD_LEVELS.index(c.load)
    )
    home, away = direction(site, plan)
    clients = SiteClients.connect(site)
    result = BenchResult(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        environment={**describe_environment(), **site_environment(site.extra)},
        params={
            "strategies": list(plan.strategies),
            "gates": list(plan.gates),
            "stall_from": STALL_TRIGGERS[plan.stall_from],
            "conditions": [c.__dict__ for c in conditions],
            "runs": plan.runs,
            "chassis": len(site.chassis),
            "direction": f"{home} -> {away} (returns unmeasured)",
            "probe_interval_ms": plan.probe_interval_ms,
            "copy_ms": plan.copy_ms,
            "pause_ms": plan.pause_ms,
            "guest": plan.guest,
            **plan.params,
        },
        runs=[],
    )
    ovn = lab_ovn(site.extra).get("ovn", "")  # each run carries it: a matrix groups by it
    with SbMonitor(site.sb_remote) as sb_monitor:
        for cond in conditions:
            if cond.load != site.extra.get("load", "L0"):
                progress(f"building load {cond.load} on {away}")
                site = apply_load(cond.load, away)
            for index in range(plan.runs):
                for strategy, gate in [(s, g) for s in plan.strategies for g in plan.gates]:
                    shown = strategy if len(plan.gates) == 1 else f"{strategy} gate={gate}"
                    progress(f"{_label(cond)} run {index + 1}/{plan.runs}: {shown}")
                    site = _return_home(site, plan, home, hypervisor, clients, save_site)
                    run, site = _run_once(
                        site, plan, strategy, cond, index, hypervisor, clients, sb_monitor,
                        faults, leftover_checks, gate=gate,
                    )
                    save_site(site)
                    result.runs.append(dataclasses.replace(run, ovn=ovn))
                for extra in per_round:  # e.g. the floor, measured among the strategies
                    result.runs.append(dataclasses.replace(extra(index), ovn=ovn))
        _return_home(site, plan, home, hypervisor, clients, save_site)
    return result


def _label(cond: Condition) -> str:
    return f"[{cond.load} stall={cond.stall} activation={cond.activation}]"


def _return_home(
    site: Site,
    plan: BenchPlan,
    home: str,
    hypervisor: Hypervisor,
    clients: SiteClients,
    save_site: SiteStore,
) -> Site:
    """Bring the VM back to ``home`` with an unmeasured claim migration."""
    if site.vm_named(plan.vm).chassis == home:
        return site
    options = MigrationOptions(
        strategy="claim", copy_ms=RETURN_COPY_MS, pause_ms=plan.pause_ms,
        ready_timeout_s=plan.ready_timeout_s, activation_timeout_s=plan.activation_timeout_s,
    )
    migrate(site, plan.vm, home, options, hypervisor, clients)
    site = site.with_vm_on(plan.vm, home)
    save_site(site)
    return site


def direction(site: Site, plan: BenchPlan) -> tuple[str, str]:
    """(home, away) of the measured migrations: the VM's chassis and another one that is
    not the client's. InputError, before anything runs, when the VM sits on the client's
    own chassis (moved there by hand): every run would fail its precondition."""
    vm = site.vm_named(plan.vm)
    client = site.client_named(plan.client)
    if vm.chassis == client.chassis:
        raise InputError(
            f"{vm.name} runs on {vm.chassis}, the chassis of the probe client "
            f"{client.name}: a bench measures from a third chassis; move it first, e.g. "
            f"'cutover migrate {vm.name} --to {_destination(site, vm, client)}'"
        )
    return vm.chassis, _destination(site, vm, client)


def _destination(site: Site, vm: VmSpec, client: VmSpec) -> str:
    """The other VM-hosting chassis: never the client's own (it must stay a third party)."""
    for ch in site.chassis:
        if ch.name not in (vm.chassis, client.chassis):
            return ch.name
    raise CutoverError(
        f"site {site.name} has no chassis besides {vm.chassis} and the client's "
        f"{client.chassis}; a benchmark needs three"
    )


def _run_once(
    site: Site,
    plan: BenchPlan,
    strategy: str,
    cond: Condition,
    index: int,
    hypervisor: Hypervisor,
    clients: SiteClients,
    sb_monitor: SbMonitor | None = None,
    faults: FaultTarget | None = None,
    leftover_checks: Sequence[Callable[[], list[str]]] = (),
    gate: str = "before-copy",
) -> tuple[RunResult, Site]:
    """``sb_monitor`` counts the SB rows written from just before the migration until
    the network has settled (so late writers it caused, e.g. other chassis answering an
    nb_cfg bump, are counted too).

    With a fault, a migration that aborts and rolls back is an *outcome*
    (``extra["outcome"]="rolled-back"``), not an error: it is what cutover should do when
    the fault makes readiness unprovable. Every run ends with the leftover scan
    (``extra["leftovers"]``); a run with leftovers gets an error."""
    vm = site.vm_named(plan.vm)
    client = site.client_named(plan.client)
    dst = _destination(site, vm, client)
    stall = StallPlan.parse(cond.stall)
    injector = stall.injector(clients.chassis, dst, client.chassis,
                              STALL_TRIGGERS[plan.stall_from])
    fault_plan = FaultPlan.parse(cond.fault)
    fault = fault_plan.injector(faults, dst)
    options = MigrationOptions(
        strategy=strategy,
        activation=cond.activation,
        gate=gate,
        copy_ms=plan.copy_ms,
        pause_ms=plan.pause_ms,
        ready_timeout_s=plan.ready_timeout_s,
        activation_timeout_s=plan.activation_timeout_s,
    )
    report: MigrationReport | None = None
    error: str | None = None
    outcome = "migrated"
    aborted = ""
    moved = False
    reconnects = (clients.nb.reconnects, clients.sb.reconnects)
    with Prober(site, client, vm, plan.probe_interval_ms) as prober:
        prober.start()
        time.sleep(WARMUP_S)
        try:
            check_site(clients.sb, vm, client, dst)
            steady_from, status = prober.wait_steady(BASELINE_STEADY, BASELINE_TIMEOUT_S)
            check_baseline(steady_from, status, vm, client, BASELINE_TIMEOUT_S)
        except MeasurementError as e:
            prober.stop()
            return dataclasses.replace(_not_run(plan, strategy, cond, index, vm, dst, e),
                                       gate=gate), site
        if sb_monitor is not None:
            sb_monitor.start()
        seen: list[tuple[float, str]] = []  # the steps of a migration that raises

        def record(event: str) -> None:
            seen.append((time.time() * 1000.0, event))

        try:
            report = migrate(site, vm.name, dst, options, hypervisor, clients,
                             observers=[injector, fault, record])  # fmt: skip
        except MigrationError as e:
            error = f"{type(e).__name__}: {e}"
            moved = isinstance(e, SwitchedOverIncomplete)
            outcome = "switched-over-incomplete" if moved else "failed"
            if isinstance(e, MigrationAborted):
                outcome = "rolled-back"
                if fault_plan.kind is not None:
                    error = None
                    aborted = f"{type(e).__name__}: {e}"
        finally:
            ended = end_injections(injector, fault.finish)
        if ended:  # the lab is not as the next run needs it: stop the bench, say it all
            raise LabError("could not end this run's fault injection: " + "; ".join(ended)
                           + (f"; the migration itself: {error}" if error else ""))
        time.sleep(SETTLE_S)
        writes: SbWrites | None = sb_monitor.stop() if sb_monitor is not None else None
        samples = [p for p in prober.stop() if p[0] >= (steady_from or 0)]
        duplicates = prober.duplicates
    summary = summarize(samples, plan.probe_interval_ms, duplicates)
    if error is None and summary.blackout_open:
        error = str(unmeasurable(summary, vm, client))
    if report is not None or moved:
        site = site.with_vm_on(vm.name, dst)
    if fault.error is not None:
        error = error or fault.error
    leftovers = scan_leftovers(site, clients, hypervisor, leftover_checks)
    if not leftovers.clean:
        error = error or f"Leftovers: {'; '.join(leftovers.items)}"
    t0 = (report.started_ms if report else seen[0][0] if seen
          else samples[0][1] if samples else 0.0)
    timeline = [TimelineEvent(t, n, d) for t, n, d in (report.timeline if report else [])]
    if report is None:  # failed or rolled back: the step names as the observer saw them
        timeline += [TimelineEvent(round(t - t0, 3), n, "") for t, n in seen]
    timeline.extend(_guest_events(hypervisor, vm, dst, t0))
    figures = guest_figures(hypervisor, vm) if report is not None or moved else {}
    for key, name in (("stop_at_ms", "guest.stop"), ("resume_at_ms", "guest.resume")):
        if key in figures:
            timeline.append(TimelineEvent(round(figures.pop(key) - t0, 3), name, plan.guest))
    window = injector.window_ms
    if window is not None:
        timeline.append(TimelineEvent(round(window[0] - t0, 3), "stall.start", stall.spec))
        timeline.append(TimelineEvent(round(window[1] - t0, 3), "stall.end", stall.spec))
    timeline += [TimelineEvent(round(t - t0, 3), n, d) for t, n, d in fault.events]
    timeline.sort(key=lambda e: e.t_ms)
    fault_extra: dict[str, Any] = {"outcome": outcome, "leftovers": leftovers.to_dict(),
                                   "reconnects": {
                                       "nb": clients.nb.reconnects - reconnects[0],
                                       "sb": clients.sb.reconnects - reconnects[1]}}
    if fault_plan.kind is not None and outcome == "rolled-back":
        fault_extra["aborted"] = aborted
    run = RunResult(
        strategy=strategy,
        guest=plan.guest,
        stall=stall.spec,
        activation=cond.activation,
        load=cond.load,
        fault=fault_plan.spec,
        vm=vm.name,
        src=vm.chassis,
        dst=dst,
        run_index=index,
        probe_interval_ms=plan.probe_interval_ms,
        probes_sent=summary.probes_sent,
        probes_lost=summary.probes_lost,
        blackout_ms=round(summary.blackout_ms, 3),
        loss_outage_ms=round(summary.loss_outage_ms, 3),
        migration_ms=report.migration_ms if report else 0.0,
        ready_wait_ms=report.ready_wait_ms if report else 0.0,
        detection_latency_ms=report.detection_latency_ms if report else None,
        sb_writes=writes.total if writes is not None else None,
        max_rtt_ms=None if summary.max_rtt_ms is None else round(summary.max_rtt_ms, 3),
        duplicates=summary.duplicates,
        gate=gate,
        timeline=timeline,
        error=error,
        extra={
            "silences": [
                [round(w.start_ms - t0, 3), round(w.end_ms - t0, 3)] for w in summary.silences
            ],
            "loss_runs": [
                [round(r.first_sent_ms - t0, 3), round(r.last_sent_ms - t0, 3), r.lost]
                for r in summary.loss_runs
            ],
            "max_send_gap_ms": round(summary.max_send_gap_ms, 3),
            "evidence": report.evidence if report else "",
            **({"switchover_ms": report.switchover_ms}
               if report is not None and report.switchover_ms is not None else {}),
            **figures,
            **({"sb_writes_by_table": writes.by_table} if writes is not None else {}),
            **fault_extra,
        },
    )
    return run, site


def guest_figures(hypervisor: Hypervisor, vm: VmSpec) -> dict[str, Any]:
    """The hypervisor's figures of ``vm``'s last switchover for a run record's ``extra``:
    ``guest_pause_ms`` and, for QEMU, ``qemu_downtime_ms``, ``qemu_migration_ms``,
    ``qemu_setup_ms``, ``ram_transferred_mb``, ``ram_mb``, ``max_bandwidth_mib``."""
    if not isinstance(hypervisor, ReportsMigration):
        return {}
    raw = hypervisor.last_migration(vm)
    rename = {"downtime_ms": "qemu_downtime_ms", "total_ms": "qemu_migration_ms",
              "setup_ms": "qemu_setup_ms", "status": "qemu_status"}
    return {rename.get(k, k): v for k, v in raw.items()}


def _not_run(
    plan: BenchPlan, strategy: str, cond: Condition, index: int, vm: VmSpec, dst: str,
    cause: MeasurementError,
) -> RunResult:
    """A run whose preconditions failed: no migration happened, nothing was measured."""
    return RunResult(
        strategy=strategy, guest=plan.guest, stall=cond.stall, activation=cond.activation,
        load=cond.load, vm=vm.name, src=vm.chassis, dst=dst, run_index=index,
        probe_interval_ms=plan.probe_interval_ms, probes_sent=0, probes_lost=0,
        blackout_ms=0.0, loss_outage_ms=0.0, migration_ms=0.0, ready_wait_ms=0.0,
        error=f"{type(cause).__name__}: {cause}", fault=cond.fault,
    )


def _guest_events(
    hypervisor: Hypervisor, vm: VmSpec, dst: str, t0: float
) -> Sequence[TimelineEvent]:
    try:
        events = hypervisor.guest_events(vm, dst)
    except GuestError:
        return []
    return [
        TimelineEvent(round(float(e["t_ms"]) - t0, 3), "rarp", _rarp_detail(e.get("detail")))
        for e in events
        if e.get("event") == "rarp"
    ]


def _rarp_detail(detail: object) -> str:
    if isinstance(detail, dict):
        sent = "" if detail.get("sent", True) else " (not sent)"
        return f"announce round {detail.get('round', '?')}{sent}"
    return str(detail or "")
