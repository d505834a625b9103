"""What each CLI command does, wired from the floors below (lab, bench, migration).

Kept apart from ``cli.py`` so that argument parsing stays readable; this module may import
the lab (it is the top floor), the migration core never does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cutover import config, deployment
from cutover.bench import versions
from cutover.bench.environment import lab_ovn
from cutover.bench.fault_report import fault_table
from cutover.bench.faults import FaultPlan, StallInjector, StallPlan
from cutover.bench.guest_report import floor_table
from cutover.bench.report import summary_table, write_report
from cutover.bench.results import BenchResult
from cutover.bench.runner import MATRIX, BenchPlan, Condition, direction, run_bench
from cutover.chassis.agent_client import AgentChassis, verdict_channel
from cutover.config import Timeouts
from cutover.errors import CutoverError, InputError, LabNotUp, SwitchedOverIncomplete
from cutover.guest.base import Hypervisor
from cutover.guest.select import GuestOptions, check_matches, guest_driver, site_guest
from cutover.lab import cluster, host, rootfs
from cutover.lab.faults import LabFaults
from cutover.lab.lab import Lab, command, ovn_line
from cutover.lab.ovn_install import HOST_OVN
from cutover.lab.topology import LabTopology
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationOptions
from cutover.migration.gates import check_combination
from cutover.migration.journal import Journal
from cutover.migration.orchestrator import migrate as run_migration
from cutover.migration.recovery import RecoveryReport, adopt, moved_outside
from cutover.migration.recovery import recover as run_recovery
from cutover.migration.strategies import STRATEGY_NAMES
from cutover.ovsdb.sb import SbClient
from cutover.site import Site, SslFiles


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _lab(args: argparse.Namespace, n_chassis: int = 3, ovn: str = HOST_OVN,
         ssl: bool = False, clustered: bool = False) -> Lab:  # fmt: skip
    return Lab(LabTopology(prefix=args.prefix, n_chassis=n_chassis, ovn=ovn, ssl=ssl,
                           clustered=clustered))


def enter_orchestrator_netns(site: Site) -> None:
    """An SSL lab's NB/SB listen in its underlay namespace: this process moves there
    before its first connection (sockets, agents and guests are reached by path)."""
    ns = site.extra.get("orchestrator_netns")
    if ns:
        host.enter_netns(str(ns))


def ensure_ovn(ovn: str, console: Console) -> None:
    """Build (once) the Debian root of a newer OVN with a progress bar; no-op for ``host``
    or a root already in the cache."""
    if rootfs.is_complete(rootfs.install_for(ovn)):
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(f"Debian root for OVN {ovn}", total=1.0)
        install = rootfs.ensure_root(
            ovn, lambda msg, done: progress.update(task, description=msg, completed=done))
    console.print(Text(f"OVN {ovn}: Debian root ready at {install.root}"))


def _guest(args: argparse.Namespace) -> GuestOptions:
    return GuestOptions(args.guest, int(args.guest_ram),
                        getattr(args, "max_bandwidth", None)).checked()


def _guest_params(guest: GuestOptions) -> dict[str, object]:
    """bench.json parameters of the guest; QEMU's copy and pause are real, not modelled."""
    if guest.kind == "emulated":
        return {}
    return {"guest_ram_mb": guest.ram_mb, "max_bandwidth_mib": guest.max_bandwidth_mib,
            "copy_ms": f"real ({guest.kind} pre-copy)",
            "pause_ms": f"real ({guest.kind} stop-and-copy)"}


def lab_up(lab: Lab, console: Console, guest: GuestOptions | None = None) -> Site:
    """Build the lab and start its guests; a failed start tears the lab down again."""
    ensure_ovn(lab.topo.ovn, console)
    guest = guest or GuestOptions()
    with _progress(console) as progress:
        task = progress.add_task("building the OVN lab")
        site = lab.up(progress=lambda msg: progress.update(task, description=msg))
        try:
            progress.update(task, description=f"starting {guest.kind} guests")
            site = dataclasses.replace(site, extra={**site.extra, **guest.record()})
            lab.save_site(site)
            with guest_driver(site, guest,
                              lambda msg: progress.update(task, description=msg)) as hv:
                for vm in site.vms:
                    hv.ensure_running(vm)
        except BaseException:
            lab.down()
            raise
    return site


def lab(args: argparse.Namespace, console: Console) -> int:
    if args.lab_command == "up":
        site = lab_up(_lab(args, args.chassis, args.ovn, args.ssl, args.clustered), console,
                      _guest(args))
        console.print(Text(
            f"lab {site.name} up: chassis {', '.join(c.name for c in site.chassis)}; "
            f"VMs {', '.join(f'{v.name}@{v.chassis}' for v in site.vms)}; "
            f"client {', '.join(f'{c.name}@{c.chassis}' for c in site.clients)}; "
            f"{ovn_line(lab_ovn(site.extra))}"
        ))
        return 0
    if args.lab_command == "down":
        left = _lab(args).down()
        if left:
            for item in left:
                console.print(Text(f"left behind: {item}"))
            return 1
        console.print(f"lab {args.prefix} is down; nothing left behind")
        return 0
    if args.lab_command == "config":
        print(deployment.to_toml(_lab(args).site()), end="")
        return 0
    if args.lab_command == "restart-guests":
        return restart_guests(_lab(args), console)
    if args.lab_command == "restart-agents":
        started = _lab(args).restart_agents()
        console.print(Text(f"agents started again on {', '.join(started)}" if started
                           else "every agent runs; nothing to start"))
        return 0
    status = _lab(args).status(deep=True)
    console.print(Text(status.describe()), soft_wrap=True)  # a script reads whole lines
    # for scripts: 0 up and whole, 1 up but degraded or stale, 3 down (as systemctl does)
    if status.state == "down":
        return 3
    return 1 if status.state != "up" or status.degraded else 0


def restart_guests(lab: Lab, console: Console) -> int:
    """Start each VM's guest that is dead or missing on its chassis, resume a paused one
    (the remedy a MigrationAborted names when the source guest died)."""
    site = lab.site()
    with guest_driver(site, site_guest(site)) as hypervisor:
        for vm in site.vms:
            before = hypervisor.guest_state(vm, vm.chassis)
            other = next((c.name for c in site.chassis if c.name != vm.chassis
                          and hypervisor.guest_state(vm, c.name).running), None)
            if other is not None and not before.running:  # a second guest of one VM
                console.print(f"guest {vm.name}@{vm.chassis}: {before.state}, not started: "
                              f"{vm.name}'s guest runs on {other}; run "
                              f"'{command(lab.topo.prefix, 'recover')}'", markup=False,
                              highlight=False)  # fmt: skip
                continue
            hypervisor.ensure_running(vm)
            after = hypervisor.guest_state(vm, vm.chassis)
            console.print(f"guest {vm.name}@{vm.chassis}: {before.state} -> {after}",
                          markup=False, highlight=False)
    return 0


def _options(args: argparse.Namespace, strategy: str,
             timeouts: Timeouts | None = None) -> MigrationOptions:  # fmt: skip
    """The migration's options; a timeout not on the command line comes from the config
    file's [timeouts] (``timeouts``), else its 30 s default."""
    default = timeouts or Timeouts()
    return MigrationOptions(
        strategy=strategy,
        activation=args.activation,
        gate=getattr(args, "gate", "before-copy"),
        copy_ms=args.copy_ms,
        pause_ms=args.pause_ms,
        ready_timeout_s=default.ready_s if args.ready_timeout is None else args.ready_timeout,
        activation_timeout_s=(default.activation_s if args.activation_timeout is None
                              else args.activation_timeout),
    )


def timeline_table(rows: list[tuple[float, str, str]], title: str) -> Table:
    """A migration's timeline; names and details are literal text, not markup."""
    table = Table(title=Text(title))
    table.add_column("t (ms)", justify="right")
    table.add_column("event")
    table.add_column("detail", overflow="fold")
    for t, name, detail in rows:
        table.add_row(f"{t:9.1f}", Text(name), Text(detail))
    return table


def _journal(site: Site) -> Journal | None:
    return Journal.in_dir(site.state_dir) if site.state_dir else None


def _recover(save: Callable[[Site], None] | None, site: Site, journal: Journal,
             hv: Hypervisor, clients: SiteClients, console: Console, vm: str | None
             ) -> tuple[Site, list[RecoveryReport]]:  # fmt: skip
    """Recover the open migrations (of ``vm``), print what was done, and ``save`` the
    site with each VM where it runs now."""
    reports = run_recovery(site, journal, hv, clients, vm)
    for r in reports:
        console.print(Text(f"recovered: {r.describe()}"))
        for action in r.actions:
            console.print(Text(f"  {action}"))
        site = site.with_vm_on(r.vm, r.runs_on)
        if save is not None:
            save(site)
    return site, reports


def recover(args: argparse.Namespace, console: Console) -> int:
    """``cutover recover [VM]``: roll back or complete what crashed migrations left (in
    the lab, or with ``--config`` on the deployment that file describes)."""
    save: Callable[[Site], None] | None = None
    if args.config is not None:
        dep = config.load(args.config)
        if args.vm is not None:
            dep.site.vm_named(args.vm)
        if not dep.site.state_dir:
            raise InputError(f"config {args.config} gives no [compute] state_dir: there is "
                             "no migration journal to recover from")  # fmt: skip
        site = deployment.connect(dep)  # where each VM is bound now (the SB)
    else:
        lab_ = _lab(args)
        site = lab_.site()
        save = lab_.save_site
        if args.vm is not None:
            site.vm_named(args.vm)
        enter_orchestrator_netns(site)
    journal = _journal(site)
    if journal is None:
        raise InputError(f"site {site.name} names no state_dir: there is no migration "
                         "journal to recover from")  # fmt: skip
    clients = SiteClients.connect(site)
    with guest_driver(site, site_guest(site)) as hv:
        site, reports = _recover(save, site, journal, hv, clients, console,
                                 args.vm)  # fmt: skip
        if args.vm is not None and not reports:
            adopted = adopt(site, journal, hv, clients, args.vm)
            if adopted is not None:
                console.print(Text(f"recovered without a journal record: {adopted.describe()}"))
                for action in adopted.actions:
                    console.print(Text(f"  {action}"))
                if save is not None:
                    save(site.with_vm_on(adopted.vm, adopted.runs_on))
                return 0
        moved: list[str] = []
        if save is not None:  # the lab's record of where each VM runs can fall behind
            for vm in site.vms:
                there = None if args.vm not in (None, vm.name) else moved_outside(
                    site, journal, hv, clients, vm.name)
                if there is not None:
                    console.print(Text(
                        f"{vm.name}: runs on {there} (its guest runs there, the SB binds "
                        f"{vm.lsp} there alone), not on {vm.chassis} as the lab recorded: "
                        "moved outside the lab's record (by 'cutover migrate --config' or "
                        f"another tool); the lab now records it on {there}"), soft_wrap=True)
                    site = site.with_vm_on(vm.name, there)
                    save(site)
                    moved.append(vm.name)
    leftover = [vm for vm in site.vms if len(clients.nb.requested_chassis(vm.lsp)) > 1
                and (args.vm is None or vm.name == args.vm)]  # fmt: skip
    for vm in leftover:
        console.print(Text(
            f"port {vm.lsp} of {vm.name} has requested-chassis="
            f"{','.join(clients.nb.requested_chassis(vm.lsp))} and no journal record: run "
            f"'{command(args.prefix, f'recover {vm.name}')}' to take it over"))
    if not reports and not leftover and not moved:
        console.print(Text(f"nothing to recover: no unfinished migration"
                           f"{f' of {args.vm}' if args.vm else ''} in {journal.path}"))
    return 1 if leftover else 0


def migrate(args: argparse.Namespace, console: Console) -> int:
    if args.config is not None:
        return migrate_configured(args, console)
    lab_ = _lab(args)
    site = lab_.site()
    vm = site.vm_named(args.vm)
    site.chassis_named(args.dst)
    options = _options(args, args.strategy)
    enter_orchestrator_netns(site)
    try:
        _migrate_on(site, args, options, console, lab_.save_site)
    except SwitchedOverIncomplete:
        lab_.save_site(site.with_vm_on(vm.name, args.dst))  # it runs there now
        raise
    lab_.save_site(site.with_vm_on(vm.name, args.dst))
    return 0


def _migrate_on(site: Site, args: argparse.Namespace, options: MigrationOptions,
                console: Console, save: Callable[[Site], None] | None = None
                ) -> None:  # fmt: skip
    """Migrate ``args.vm`` of ``site`` to ``args.dst`` and print its timeline. With a
    journal (the site's ``state_dir``) a crashed earlier migration of the VM is recovered
    first (``save`` records where the VM runs then) and this one is journaled."""
    stall = StallPlan.parse(args.stall)
    client_chassis = site.clients[0].chassis if site.clients else args.dst
    if stall.role == "peer":  # else it would stall the destination, labelled "peer"
        _check_peer_stall(site, args.vm, args.dst, args.stall)
    guest = dataclasses.replace(site_guest(site), max_bandwidth_mib=args.max_bandwidth).checked()
    clients = SiteClients.connect(site)
    injector = stall.injector(clients.chassis, args.dst, client_chassis)
    extra = {} if stall.role == "none" else {"stall": {
        "chassis": args.dst if stall.role == "dst" else client_chassis, "ms": stall.ms}}
    journal = _journal(site)
    try:
        with guest_driver(site, guest) as hv:
            if journal is not None:  # a crashed earlier migration of this VM first
                site, _ = _recover(save, site, journal, hv, clients, console, args.vm)
            report = run_migration(site, args.vm, args.dst, options, hv, clients,
                                   observers=[injector], journal=journal,
                                   journal_extra=extra)  # fmt: skip
    except BaseException as failed:
        _finish_stall(injector, failed)
        raise
    injector.finish()
    console.print(timeline_table(report.timeline, f"{report.vm}: {report.src} -> {report.dst} "
                                 f"({report.strategy}, gate {report.gate}, activation "
                                 f"{report.activation})"))
    console.print(Text(
        f"migrated in {report.migration_ms:.0f} ms (switchover at "
        f"{report.switchover_ms or 0:.0f} ms); waited {report.ready_wait_ms:.0f} ms "
        f"for readiness ({report.evidence or 'no wait'})"
    ))


def _finish_stall(injector: StallInjector, failed: BaseException) -> None:
    """Resume a stalled controller after a failed migration without hiding why it failed:
    a resume that fails too (e.g. through the destination's dead agent) is a note on the
    migration's error, which the CLI prints on the same line."""
    try:
        injector.finish()
    except CutoverError as e:
        failed.add_note(f"{type(e).__name__}: {e}")


def _check_peer_stall(site: Site, vm: str, dst: str, spec: str) -> None:
    """``--stall peer:MS`` pauses the probe client's chassis, a third party: InputError
    when the site has no client (a --config deployment) or the client sits on the
    migration's source or destination."""
    if not site.clients:
        raise InputError(f"--stall {spec} stalls the probe client's chassis, but site "
                         f"{site.name} has no probe client: use dst:MS")  # fmt: skip
    peer = site.clients[0].chassis
    src = site.vm_named(vm).chassis
    if peer in (src, dst):
        role = "destination" if peer == dst else "source"
        raise InputError(f"--stall {spec}: the peer is the probe client's chassis {peer}, "
                         f"which is this migration's {role}: pick another destination, or "
                         "use dst:MS")  # fmt: skip


def migrate_configured(args: argparse.Namespace, console: Console) -> int:
    """``migrate --config FILE``: the same migration on a deployment the lab did not build
    (the file is checked whole before anything connects)."""
    dep = config.load(args.config)
    dep.site.vm_named(args.vm)
    dep.site.chassis_named(args.dst)
    options = _options(args, args.strategy, dep.timeouts)
    site = deployment.connect(dep)
    _migrate_on(site, args, options, console)
    return 0


def config_check(args: argparse.Namespace, console: Console) -> int:
    """``config check FILE [--connect]``: one line per finding; 0 when all is well."""
    dep = config.load(args.file)
    site = dep.site
    console.print(Text(
        f"config {dep.path}: OK - NB {site.nb_remote}, SB {site.sb_remote}"
        f"{' (SSL)' if site.ssl else ''}; chassis {', '.join(c.name for c in site.chassis)}; "
        f"VMs {', '.join(v.name for v in site.vms)}; compute {dep.driver}"))
    if not args.connect:
        return 0
    site = deployment.connect(dep)
    console.print(Text("NB and SB answer; " + "; ".join(
        f"{v.name}: {v.lsp} {v.mac} {v.ip} on {v.chassis}" for v in site.vms)))
    sb = SbClient(site.sb_remote, dep.timeouts.ovsdb_s)
    registered = set(sb.chassis_names())
    missing = [c.name for c in site.chassis if c.name not in registered]
    if missing:
        raise InputError(f"chassis {', '.join(missing)} of the config are not registered in "
                         f"the SB at {site.sb_remote}; check each [[chassis]] name (= its "
                         "system-id)")  # fmt: skip
    for ch in site.chassis:
        health = AgentChassis(ch, sb).request("GET", "/v1/health")
        if health.get("chassis") != ch.name:
            raise InputError(f"the agent at {ch.agent} serves chassis {health.get('chassis')!r}, "
                             f"not {ch.name}: fix [[chassis]] {ch.name}'s agent")  # fmt: skip
        console.print(Text(f"agent of {ch.name} at {ch.agent}: answers (API "
                           f"v{health.get('api_version')})"))
    return 0


def _conditions(args: argparse.Namespace) -> tuple[Condition, ...]:
    activations = args.activations or ["rarp"]
    if args.matrix:
        if args.stalls or args.loads:
            raise InputError("--matrix sets the loads and stalls itself; drop --load/--stall")
        base: list[Condition] = list(MATRIX)
    else:
        base = [Condition(load=ld, stall=st) for ld in args.loads or ["L0"]
                for st in args.stalls or ["none"]]
    faults = getattr(args, "faults", None) or ["none"]
    return tuple(
        Condition(c.load, c.stall, act, f).checked() for c in base for act in activations
        for f in faults
    )


def _check_faults(args: argparse.Namespace, conditions: tuple[Condition, ...]) -> None:
    """Refuse a fault the lab cannot take before anything is built: a leader kill needs a
    clustered lab (the one running, or the one the bench builds with --clustered)."""
    needs = sorted({c.fault for c in conditions
                    if (k := FaultPlan.parse(c.fault).kind) is not None and k.clustered})
    if not needs:
        return
    if not (args.clustered or cluster.is_clustered(LabTopology(prefix=args.prefix))):
        raise InputError(f"fault {', '.join(needs)} needs clustered NB/SB databases: add "
                         "--clustered (or run it on a lab built with 'lab up --clustered')")


def _output_dir(out: Path) -> Path:
    """``--out``, created now: a bench must not run for minutes and then fail to write."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory for bench.json and the report")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(
            f"--out {out}: cannot create it ({e.strerror}); give another directory"
        ) from None
    return out


def bench(args: argparse.Namespace, console: Console) -> int:
    default = STRATEGY_NAMES if args.matrix else ("legacy", "claim")
    strategies = tuple(args.strategies or default)
    guest = _guest(args)
    if args.floor and guest.kind == "emulated":
        raise InputError("--floor measures a real QEMU migration: add --guest qemu")
    gates = tuple(args.gates or ("before-copy",))
    for strategy in strategies:  # a gate or activation the guests cannot do: refuse now
        for gate in gates:
            for activation in args.activations or ["rarp"]:
                check_combination(strategy, gate, activation, guest.kind == "qemu",
                                  f"--guest {guest.kind}", signals_stop=guest.kind == "qemu")
    conditions = _conditions(args)
    _check_faults(args, conditions)
    verdict_channel()  # read by each migration's chassis seam: refused before a lab is built
    plan = BenchPlan(  # validates every option before anything is built
        strategies=strategies,
        gates=gates,
        stall_from=args.stall_from,
        conditions=conditions,
        runs=args.runs,
        probe_interval_ms=args.interval_ms,
        copy_ms=args.copy_ms,
        pause_ms=args.pause_ms,
        ready_timeout_s=args.ready_timeout,
        activation_timeout_s=args.activation_timeout,
        guest=guest.kind,
        params=_guest_params(guest),
    )
    out = _output_dir(args.out)
    ovns: list[str | None] = list(dict.fromkeys(args.ovns)) if args.ovns else [None]
    if len(ovns) > 1 and _lab(args).status().state != "down":
        raise InputError(
            f"bench --ovn {' --ovn '.join(str(o) for o in ovns)} builds one lab per version "
            f"under prefix {args.prefix!r}, but that lab exists: run 'cutover lab down' or "
            "use another --prefix"
        )
    results = [_bench_on(args, console, plan, guest, ovn,
                         keep=args.keep_lab and ovn == ovns[-1]) for ovn in ovns]
    result = results[0] if len(results) == 1 else versions.merge(results)
    paths = write_report(result, out)
    console.print(summary_table(result))
    floor = floor_table(result)
    if floor is not None:
        console.print(floor)
    faults = fault_table(result)
    if faults is not None:
        console.print(faults)
    if len(results) > 1:
        console.print(versions.comparison_table(result))
    console.print(f"results: {paths.json}  report: {paths.markdown}")
    failed = [r for r in result.runs if r.error]
    for r in failed:
        console.print(Text.assemble((f"run {r.run_index} {r.strategy} failed", "red"),
                                    f": {r.error}"))  # fmt: skip
    return 1 if failed else 0


def _bench_on(
    args: argparse.Namespace, console: Console, plan: BenchPlan, guest: GuestOptions,
    ovn: str | None, keep: bool,
) -> BenchResult:
    """The plan on the running lab (``ovn`` None, or the lab runs that OVN), else on a lab
    built for it and removed afterwards unless ``keep`` (``--keep-lab``: the last version's
    lab stays up)."""
    lab_ = _lab(args, args.chassis or 3, ovn or HOST_OVN, args.clustered)
    built = False
    try:
        site = lab_.site()
        check_matches(site, guest)
        enter_orchestrator_netns(site)
    except LabNotUp:
        site = lab_up(lab_, console, guest)
        built = True
    else:
        if args.chassis is not None and args.chassis != len(site.chassis):
            raise InputError(
                f"lab {site.name} runs {len(site.chassis)} chassis but --chassis is "
                f"{args.chassis}: drop --chassis, or 'cutover lab down' first"
            )
        if args.clustered and not lab_.topo.clustered:
            raise InputError(
                f"lab {site.name} runs standalone NB/SB but --clustered was given: drop it, "
                "or 'cutover lab down' first, or use another --prefix"
            )
        running = lab_ovn(site.extra).get("install", HOST_OVN)
        if ovn is not None and running != ovn:
            raise InputError(
                f"lab {site.name} runs --ovn {running}, not {ovn}: drop --ovn, or "
                "'cutover lab down' first, or use another --prefix"
            )
    direction(site, plan)  # the VM on the client's chassis: refused before the floor is built
    where = f"OVN {lab_ovn(site.extra).get('ovn', '?')}"
    try:
        with _progress(console) as progress:
            total = plan.runs * len(plan.strategies) * len(plan.conditions)
            task = progress.add_task(f"benchmark on {where}", total=total)

            def step(msg: str) -> None:
                progress.update(task, description=f"{where}: {msg}")

            def saved(new_site: Site) -> None:
                lab_.save_site(new_site)

            def load(level: str, chassis: str) -> Site:
                return lab_.apply_load(level, chassis, step)

            def measured(msg: str) -> None:
                if not msg.startswith("building"):
                    progress.advance(task)
                step(msg)

            with contextlib.ExitStack() as stack:
                hv = stack.enter_context(guest_driver(site, guest, step))
                per_round = []
                if args.floor:  # built and booted before the first run: fails early
                    from cutover.bench.floor import Floor

                    per_round.append(stack.enter_context(Floor(site, plan, guest, step)).run)
                faults = LabFaults(lab_)
                return run_bench(site, plan, hv, saved, load, measured, per_round,
                                 faults=faults, leftover_checks=[faults.leftovers])
    finally:
        if built and not keep:
            lab_.down()


def agent(args: argparse.Namespace) -> int:
    """Serve this node's agent until SIGTERM (the web stack is imported only here)."""
    from cutover.agent.server import AgentConfig, serve

    serve(AgentConfig(
        chassis=args.chassis, ovs_remote=args.ovs_remote, sb_remote=args.sb_remote,
        listen=args.listen, token_file=args.token_file, controller_ctl=args.controller_ctl,
        integration_bridge=args.integration_bridge, ofctl=tuple(shlex.split(args.ofctl)),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
        allow_faults=args.allow_faults, plugger=args.plugger, state_dir=args.state_dir,
        ovsdb_ssl=_agent_ssl(args),
    ))
    return 0


def _agent_ssl(args: argparse.Namespace) -> SslFiles | None:
    files = (args.ovsdb_ssl_key, args.ovsdb_ssl_cert, args.ovsdb_ssl_ca)
    if not any(files):
        return None
    if not all(files):
        raise InputError("give all of --ovsdb-ssl-key, --ovsdb-ssl-cert and --ovsdb-ssl-ca")
    return SslFiles(*(str(f.absolute()) for f in files))
