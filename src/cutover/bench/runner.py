"""Run migrations back and forth under a prober and turn each into a RunResult.

One run: the client guest on a third chassis probes the VM at a fixed interval; the VM
migrates (strategy, activation, stall as asked); the prober keeps going until the
network has settled; the samples give the client-visible blackout. Strategies alternate
within a round so that a noisy neighbour hurts all of them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cutover.bench.environment import describe_environment
from cutover.bench.faults import StallPlan
from cutover.bench.results import BenchResult, RunResult, TimelineEvent
from cutover.errors import CutoverError, GuestError, MigrationError
from cutover.guest.base import Hypervisor
from cutover.migration.context import MigrationOptions
from cutover.migration.orchestrator import MigrationReport, SiteClients, migrate
from cutover.probe.analysis import summarize
from cutover.probe.client import Prober
from cutover.site import Site, VmSpec

WARMUP_S = 0.3
SETTLE_S = 1.0


@dataclass(frozen=True)
class BenchPlan:
    strategies: tuple[str, ...]
    runs: int = 3
    stall: str = "none"
    activation: str = "rarp"
    load: str = "L0"
    vm: str = "vm1"
    client: str = "client"
    probe_interval_ms: float = 2.0
    copy_ms: float = 500.0
    pause_ms: float = 30.0
    ready_timeout_s: float = 30.0
    guest: str = "emulated"
    params: dict[str, object] = field(default_factory=dict)


SiteStore = Callable[[Site], None]
"""Persists the site after a VM moved (the lab rewrites its site.json)."""
Progress = Callable[[str], None]


def run_bench(
    site: Site,
    plan: BenchPlan,
    hypervisor: Hypervisor,
    save_site: SiteStore,
    progress: Progress = lambda _msg: None,
) -> BenchResult:
    stall = StallPlan.parse(plan.stall)
    clients = SiteClients.connect(site)
    result = BenchResult(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        environment=describe_environment(),
        params={
            "strategies": list(plan.strategies),
            "runs": plan.runs,
            "stall": stall.spec,
            "activation": plan.activation,
            "load": plan.load,
            "probe_interval_ms": plan.probe_interval_ms,
            "copy_ms": plan.copy_ms,
            "pause_ms": plan.pause_ms,
            "guest": plan.guest,
            **plan.params,
        },
        runs=[],
    )
    for index in range(plan.runs):
        for strategy in plan.strategies:
            progress(f"run {index + 1}/{plan.runs}: {strategy}")
            run, site = _run_once(site, plan, strategy, index, stall, hypervisor, clients)
            save_site(site)
            result.runs.append(run)
    return result


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
    index: int,
    stall: StallPlan,
    hypervisor: Hypervisor,
    clients: SiteClients,
) -> tuple[RunResult, Site]:
    vm = site.vm_named(plan.vm)
    client = site.client_named(plan.client)
    dst = _destination(site, vm, client)
    injector = stall.injector(site, dst, client.chassis)
    options = MigrationOptions(
        strategy=strategy,
        activation=plan.activation,
        copy_ms=plan.copy_ms,
        pause_ms=plan.pause_ms,
        ready_timeout_s=plan.ready_timeout_s,
    )
    report: MigrationReport | None = None
    error: str | None = None
    with Prober(site, client, vm, plan.probe_interval_ms) as prober:
        prober.start()
        time.sleep(WARMUP_S)
        try:
            report = migrate(site, vm.name, dst, options, hypervisor, clients, observers=[injector])
        except MigrationError as e:
            error = f"{type(e).__name__}: {e}"
        finally:
            injector.wait_over()
            injector.finish()
        time.sleep(SETTLE_S)
        samples = prober.stop()
    summary = summarize(samples, plan.probe_interval_ms)
    if report is not None:
        site = site.with_vm_on(vm.name, dst)
    t0 = report.started_ms if report else (samples[0][1] if samples else 0.0)
    timeline = [TimelineEvent(t, n, d) for t, n, d in (report.timeline if report else [])]
    timeline.extend(_guest_events(hypervisor, vm, dst, t0))
    window = injector.window_ms
    if window is not None:
        timeline.append(TimelineEvent(round(window[0] - t0, 3), "stall.start", stall.spec))
        timeline.append(TimelineEvent(round(window[1] - t0, 3), "stall.end", stall.spec))
    timeline.sort(key=lambda e: e.t_ms)
    run = RunResult(
        strategy=strategy,
        guest=plan.guest,
        stall=stall.spec,
        activation=plan.activation,
        load=plan.load,
        vm=vm.name,
        src=vm.chassis,
        dst=dst,
        run_index=index,
        probe_interval_ms=plan.probe_interval_ms,
        probes_sent=summary.probes_sent,
        probes_lost=summary.probes_lost,
        blackout_ms=summary.blackout_ms,
        migration_ms=report.migration_ms if report else 0.0,
        ready_wait_ms=report.ready_wait_ms if report else 0.0,
        timeline=timeline,
        error=error,
        extra={
            "loss_windows": [
                [round(w.start_ms - t0, 3), round(w.end_ms - t0, 3)] for w in summary.windows
            ],
            "evidence": report.evidence if report else "",
        },
    )
    return run, site


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
