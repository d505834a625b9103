"""The lab's life cycle: ``up`` builds the topology and writes a Site, ``down`` undoes it all.

``Lab`` holds no state of its own beyond the topology: what exists is read from the lab
directory (manifest, site.json) and /proc every time, so a fresh ``Lab`` in a new process can
report on and tear down a lab that a crashed CLI built. A build that fails tears down what
it built (from the manifest) and says which step failed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rich.progress import Progress, TaskID

from cutover.errors import (
    CutoverError,
    LabAlreadyUp,
    LabBuildError,
    LabError,
    LabNotUp,
    PrerequisiteError,
)
from cutover.guest import qemu_proc
from cutover.guest.inventory import GuestRecord, guests_of
from cutover.lab import (
    agents,
    central,
    chassis,
    cluster,
    host,
    load,
    pki,
    rootfs,
    topo_ovn,
    underlay,
)
from cutover.lab.manifest import Manifest
from cutover.lab.ovn_install import HOST_OVN, OvnInstall
from cutover.lab.topology import ChassisSpec, LabTopology, PortSpec
from cutover.ovsdb import connection
from cutover.site import ChassisEndpoint, Site, VmSpec

LAB_MARK = ".cutover-lab"
DEFAULT_PREFIX = "cutover"
"""File that marks a directory as a lab dir: ``down`` only ever removes a marked directory."""
GUEST_MARKERS = ("cutover.guest", "cutover.probe")
"""Guest/prober processes (other modules' emulators) that ``down`` may stop by pidfile."""

ProgressFn = Callable[[str], None]
LabState = Literal["up", "down", "stale"]


@dataclass(frozen=True)
class LabStatus:
    """What exists of a lab right now, read from its manifest, /proc and ``ip netns``."""

    state: LabState
    prefix: str
    lab_dir: Path
    daemons: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)
    """``central``/chassis name -> daemon name -> alive."""
    namespaces: tuple[str, ...] = ()
    """Existing namespaces with the lab prefix."""
    problems: tuple[str, ...] = ()
    """Why the lab is stale (empty when up or down)."""
    guests: tuple[GuestRecord, ...] = ()
    """Each VM's guest and each client's prober (read when the lab is up)."""
    ovn: Mapping[str, str] = field(default_factory=dict)
    """The running lab's OVN install and versions (``site.json``'s ``extra["ovn"]``)."""
    unfinished: tuple[str, ...] = ()
    """Migrations left half-done (an open journal record whose process is gone, or a
    port with two requested chassis and no migration running): ``status(deep=True)``."""
    migrating: tuple[str, ...] = ()
    """Migrations running right now (open record, live process): not a problem."""
    clusters: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Clustered lab: ``NB``/``SB`` -> member -> RAFT role (``leader``, ``follower``,
    ``candidate``, ``down``); {} standalone."""

    @property
    def agents_down(self) -> tuple[str, ...]:
        """Chassis whose agent is not running (``lab restart-agents`` starts them again)."""
        if self.state != "up":
            return ()
        return tuple(group for group, names in self.daemons.items()
                     if names.get(agents.AGENT) is False)  # fmt: skip

    @property
    def degraded(self) -> tuple[str, ...]:
        """Guests that make an up lab unhealthy (a VM's guest dead or missing, ...), dead
        agents and unfinished migrations: the lab's OVN still works, so ``state`` stays
        ``up`` and ``site()`` still answers (a migration through a dead agent fails with
        ChassisUnreachable naming it)."""
        return (tuple(f"guest {g.describe()}" for g in self.guests if g.degrades)
                + tuple(f"agent of {c} not running" for c in self.agents_down)
                + tuple(f"unfinished {u}" for u in self.unfinished))  # fmt: skip

    def describe(self) -> str:
        """A few lines for a person: state, namespaces, each group's daemons, guests,
        problems."""
        degraded = f", degraded: {'; '.join(self.degraded)}" if self.degraded else ""
        lines = [f"lab {self.prefix} is {self.state}{degraded} ({self.lab_dir})"]
        if self.ovn:
            lines.append(f"  {ovn_line(self.ovn)}")
        if self.namespaces:
            lines.append(f"  namespaces: {', '.join(self.namespaces)}")
        for group, daemons in self.daemons.items():
            alive = ", ".join(f"{n} {'up' if ok else 'DEAD'}" for n, ok in daemons.items())
            lines.append(f"  {group}: {alive}")
        for db, members in self.clusters.items():
            leaders = [m for m, role in members.items() if role == "leader"]
            lines.append(f"  {db} cluster: leader {leaders[0] if len(leaders) == 1 else 'NONE'}"
                         f" ({', '.join(f'{m} {role}' for m, role in members.items())})")
        lines += [f"  guest: {g.describe()}" for g in self.guests]
        lines += [f"  migrating: {m}" for m in self.migrating]
        lines += [f"  unfinished: {u}" for u in self.unfinished]
        lines += [f"  problem: {p}" for p in self.problems]
        # a VM whose guest runs on another chassis must not get a second guest: its
        # remedy is recover (an unfinished migration, or a VM moved outside the lab's record)
        elsewhere = {g.name for g in self.guests if g.role == "stray" and g.state == "running"}
        if any(g.degrades and g.role != "stray" and g.name not in elsewhere
               for g in self.guests):  # fmt: skip
            lines.append(f"  run '{command(self.prefix, 'lab restart-guests')}' to start the "
                         "VMs' guests again")
        if self.agents_down:
            lines.append(f"  run '{command(self.prefix, 'lab restart-agents')}' to start the "
                         f"agents of {', '.join(self.agents_down)} again")
        if self.unfinished:
            lines.append(f"  run '{command(self.prefix, 'recover')}' to roll back or complete "
                         "the unfinished migrations")
        elif elsewhere and not self.migrating:
            lines.append(f"  run '{command(self.prefix, 'recover')}' to record where "
                         f"{', '.join(sorted(elsewhere))} runs (moved outside the lab's record)")
        if self.state == "stale":
            lines.append(f"  run '{command(self.prefix, 'lab down')}' (then "
                         f"'{command(self.prefix, 'lab up')}') to clear it")
        return "\n".join(lines)


def _migrations(site: Site, nb_remote: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(unfinished, running) migrations of ``site``: open journal records, and ports whose
    NB ``requested-chassis`` names two chassis without a running migration of their VM
    (left by a crash before the journal existed, or by another tool). The NB is read
    through ``nb_remote``, the lab's own unix socket(s): an SSL lab's ``ssl:`` remote
    answers only in its underlay namespace, the socket everywhere."""
    from cutover.migration.journal import Journal
    from cutover.ovsdb.nb import NbClient

    unfinished: list[str] = []
    running: list[str] = []
    busy: set[str] = set()
    if site.state_dir:
        for rec in Journal.in_dir(site.state_dir).open_migrations():
            (running if rec.owner_alive else unfinished).append(rec.describe())
            busy.add(rec.vm)
    try:
        nb = NbClient(nb_remote)
        ports = {vm.name: nb.requested_chassis(vm.lsp) for vm in site.vms}
    except CutoverError as e:  # status must answer even when the NB does not
        return (*unfinished, f"VM ports not checked (the NB did not answer: {e})"), tuple(running)
    for vm in site.vms:
        requested = ports[vm.name]
        if len(requested) > 1 and vm.name not in busy:
            unfinished.append(f"port {vm.lsp} of {vm.name} has requested-chassis="
                              f"{','.join(requested)} and no journal record (recover "
                              f"{vm.name} takes it over)")  # fmt: skip
    return tuple(unfinished), tuple(running)


def command(prefix: str, what: str) -> str:
    """The cutover command line for ``what`` on the lab ``prefix`` (hints must be copyable:
    without ``--prefix`` they would act on another lab)."""
    return f"cutover {what}" if prefix == DEFAULT_PREFIX else f"cutover --prefix {prefix} {what}"


class _Steps:
    """Adapts the caller's progress sink (a callable or a rich Progress) to named steps."""

    def __init__(self, sink: Progress | ProgressFn | None, title: str, total: int) -> None:
        self.sink = sink
        self.task: TaskID | None = None
        if isinstance(sink, Progress):
            self.task = sink.add_task(title, total=total)
        self.current = "start"

    def __call__(self, what: str) -> None:
        self.current = what
        sink = self.sink
        if isinstance(sink, Progress):
            if self.task is not None:
                sink.update(self.task, description=what)
        elif sink is not None:
            sink(what)

    def advance(self, what: str) -> None:
        """A top-level step: names the build phase for errors and moves the bar."""
        if isinstance(self.sink, Progress) and self.task is not None:
            self.sink.advance(self.task)
        self(what)

    def done(self) -> None:
        if isinstance(self.sink, Progress) and self.task is not None:
            task = self.sink.tasks[self.task]
            self.sink.update(self.task, completed=task.total)


class Lab:
    """A real OVN on this machine: central, underlay, chassis namespaces, VM and client ports."""

    def __init__(self, topology: LabTopology | None = None) -> None:
        topo = topology if topology is not None else LabTopology()
        self._asked = topo
        """What ``up`` builds; ``topo`` describes what exists (a lab built clustered is
        clustered whatever the caller's topology says, so status/down/nbctl reach it)."""
        if not topo.clustered and cluster.is_clustered(topo):
            topo = dataclasses.replace(topo, clustered=True)  # as it was built
        self.topo = topo
        self.manifest = Manifest(self.topo.dir)

    # -- status ----------------------------------------------------------------------------

    def status(self, deep: bool = False) -> LabStatus:
        """What exists of the lab. ``deep``: also look for unfinished migrations (reads
        the migration journal and the NB: ``lab status`` does, ``site()`` does not)."""
        topo = self.topo
        daemons: dict[str, dict[str, bool]] = {}
        for p in self.manifest.processes():
            daemons.setdefault(p.group, {})[p.name] = host.is_ours(p.pid, p.marker)
        namespaces = tuple(host.list_netns(topo.prefix))
        problems: list[str] = []
        if self.manifest.exists():
            # judged from what the manifest recorded, not from self.topo: a lab built with
            # more chassis than this Lab object's topology is still judged correctly
            # a dead agent leaves the lab's OVN whole: degraded (restart-agents), not stale
            problems += [f"{group} {name} is not running" for group, names in daemons.items()
                         for name, alive in names.items() if not alive and name != agents.AGENT]
            problems += [f"namespace {ns} is missing" for ns in self.manifest.netns()
                         if ns not in namespaces]
            if not topo.site_path.exists():
                problems.append(f"{topo.site_path} is missing")
            state: LabState = "stale" if problems else "up"
        elif namespaces or (topo.dir / LAB_MARK).exists():
            problems.append("no manifest, but leftovers: "
                            + ", ".join([*namespaces, str(topo.dir)]))
            state = "stale"
        else:
            state = "down"
        guests = guests_of(topo.site_path) if state == "up" else ()
        unfinished: tuple[str, ...] = ()
        migrating: tuple[str, ...] = ()
        if deep and state == "up":
            unfinished, migrating = _migrations(Site.load(topo.site_path),
                                                topo.local_remote("nb"))
        clusters = cluster.roles(topo) if self.manifest.exists() else {}
        return LabStatus(state=state, prefix=topo.prefix, lab_dir=topo.dir, daemons=daemons,
                         namespaces=namespaces, problems=tuple(problems), guests=guests,
                         ovn=_recorded_ovn(topo.site_path), unfinished=unfinished,
                         migrating=migrating, clusters=clusters)

    def restart_controller(self, name: str) -> int:
        """Start chassis ``name``'s ovn-controller again after it died (fault tests); returns
        the new pid. LabError if the old one still runs: stop it first."""
        spec = next((c for c in self.topo.chassis if c.name == name), None)
        if spec is None:
            raise LabError(f"lab {self.topo.prefix} has no chassis {name}")
        running = [p for p in self.manifest.processes()
                   if p.group == name and p.name == chassis.CONTROLLER
                   and host.is_ours(p.pid, p.marker)]  # fmt: skip
        if running:
            raise LabError(f"ovn-controller of {name} still runs (pid {running[0].pid})")
        return chassis.start_controller(self.topo, spec, self.manifest)

    def restart_agents(self) -> list[str]:
        """Start the agent of every chassis whose agent is not running and wait until each
        answers; returns those chassis. On its start an agent withdraws its stale
        published keys and honours a pending timed pause (docs/agent.md), so a crashed
        migration's ``recover`` can run after this. LabNotUp if the lab is not up."""
        site = self.site()
        down = self.status().agents_down
        specs = [c for c in self.topo.chassis if c.name in down]
        for spec in specs:
            agents.start_agent(self.topo, self.manifest, spec)
        if self.topo.ssl:
            agents.wait_answering(self.topo, {c.name: site.chassis_named(c.name) for c in specs})
        else:
            from cutover.agent.server import read_token  # token format lives with the agent

            token = read_token(agents.token_path(self.topo))
            for spec in specs:
                agents.wait_agent(self.topo, spec, token)
        return [c.name for c in specs]

    def _nb_alive(self) -> bool:
        return central.db_alive(self.topo, self.manifest, "nb")

    def site(self) -> Site:
        """The Site of the running lab; LabNotUp if it is down or broken."""
        st = self.status()
        if st.state != "up":
            detail = f": {'; '.join(st.problems)}" if st.problems else ""
            raise LabNotUp(
                f"lab {self.topo.prefix!r} is {st.state}{detail}; run "
                f"'{command(self.topo.prefix, 'lab up')}'"
                + (f" after '{command(self.topo.prefix, 'lab down')}'"
                   if st.state == "stale" else "")
            )
        return Site.load(self.topo.site_path)

    def save_site(self, site: Site) -> None:
        """Record the site as it is now (e.g. a VM moved), so the next ``site()`` returns it."""
        if not self.manifest.exists():
            raise LabNotUp(f"lab {self.topo.prefix!r} is not up; nothing to save the site into")
        site.save(self.topo.site_path)

    def apply_load(
        self, level: str, chassis: str, progress: Callable[[str], None] = lambda _m: None
    ) -> Site:
        """Raise the running lab's control-plane load to ``level`` on ``chassis`` (see
        :mod:`cutover.lab.load`); the level is recorded in the site (``extra["load"]``)."""
        site = self.site()
        current = str(site.extra.get("load", "L0"))
        report = load.apply_load(self.topo, current, level, chassis, progress)
        extra = {**site.extra, "load": report.level, "load_chassis": chassis}
        site = dataclasses.replace(site, extra=extra)
        self.save_site(site)
        return site

    # -- up --------------------------------------------------------------------------------

    def up(self, progress: Progress | ProgressFn | None = None) -> Site:
        """Build the whole lab and return its Site (also written to ``lab_dir/site.json``)."""
        topo = self.topo
        steps = _Steps(progress, f"lab {topo.prefix} up", total=8 + topo.n_chassis)
        if topo.ovn != HOST_OVN:
            steps(f"OVN {topo.ovn}: Debian root (built once, then cached)")
            rootfs.ensure_root(topo.ovn, lambda msg, _done: steps(msg))
        steps("checking prerequisites")
        install = rootfs.install_for(topo.ovn)
        host.check_prerequisites(install)
        # the QEMU settings the site records (CUTOVER_QEMU_ROOT, the NIC offloads): a bad
        # one refused now, not after the whole lab was built and torn down again
        qemu_proc.lab_record()
        if self.manifest.exists() and self._nb_alive():
            problems = self.status().problems
            degraded = f" (degraded: {'; '.join(problems)})" if problems else ""
            raise LabAlreadyUp(
                f"lab {topo.prefix!r} is already up in {topo.dir}{degraded}; "
                f"run '{command(topo.prefix, 'lab down')}' first"
            )
        self._check_lab_dir()
        if self.status().state != "down":
            steps.advance("clearing a stale lab")
            left = self.down()
            if left:
                raise LabBuildError("could not clear the stale lab first: " + "; ".join(left))
        else:
            steps.advance("no stale lab to clear")
        self.topo = topo = self._asked
        try:
            site = self._build(steps)
        except BaseException as e:
            step = steps.current
            errors = _recent_log_errors(topo.dir)  # read before teardown removes the logs
            left = self.down()
            if not isinstance(e, Exception) or isinstance(e, PrerequisiteError):
                raise  # Ctrl-C, exit: torn down all the same
            tail = f"; teardown left: {'; '.join(left)}" if left else "; torn down"
            logs = f"; daemon log errors: {' | '.join(errors)}" if errors else ""
            raise LabBuildError(f"lab build failed at step {step!r}: {e}{logs}{tail}") from e
        steps.done()
        return site

    def _check_lab_dir(self) -> None:
        d = self.topo.dir
        if d.exists() and not (d / LAB_MARK).exists() and any(d.iterdir()):
            raise LabBuildError(
                f"{d} exists, is not empty and was not made by the lab; "
                "remove it or choose another lab_dir"
            )

    def _build(self, steps: _Steps) -> Site:
        topo = self.topo
        parent_created = not topo.dir.parent.exists()
        topo.dir.mkdir(parents=True, exist_ok=True)
        (topo.dir / LAB_MARK).write_text(topo.prefix + "\n")
        if parent_created:
            self.manifest.add_path(topo.dir.parent, tree=False)
        self.manifest.add_path(topo.dir, tree=True)
        topo.guest_dir.mkdir(exist_ok=True)

        if topo.ssl:
            self._build_ssl_base(steps)
        steps.advance("central: NB/SB ovsdb-server and ovn-northd")
        central.build_central(topo, self.manifest, steps)
        steps.advance("underlay bridge")
        if not topo.ssl:
            underlay.build_underlay(topo, self.manifest)
        for ch in topo.chassis:
            steps.advance(f"chassis {ch.name}")
            chassis.build_chassis(topo, ch, self.manifest, steps)
        steps.advance(f"waiting for {topo.n_chassis} chassis with encaps in the SB")
        self._wait_chassis_registered()
        steps.advance("per-chassis agents")
        agents.start_agents(topo, self.manifest)
        steps.advance("logical switch, VM and client ports (plugged by the agents)")
        topo_ovn.build_logical_switch(topo)
        endpoints = {c.name: c for c in self._make_site(rootfs.install_for(topo.ovn)).chassis}
        if topo.ssl:
            agents.wait_answering(topo, endpoints)
        host.in_netns(topo.central_netns, lambda: topo_ovn.plug_all(topo, endpoints))
        steps.advance("waiting until every chassis bound its ports (--wait=hv)")
        topo_ovn.wait_hv_sync(topo)
        topo_ovn.wait_bound(topo)
        self._wait_tunnels()
        steps.advance("writing site.json")
        site = self._make_site(rootfs.install_for(topo.ovn))
        site.save(topo.site_path)
        return site

    def _build_ssl_base(self, steps: _Steps) -> None:
        """An SSL lab: the PKI, then the underlay with the central address, before the
        central servers that listen on it."""
        steps("PKI (ovs-pki): CA and certificates")
        pki.build_pki(self.topo)
        steps("underlay bridge and the central address")
        underlay.build_underlay(self.topo, self.manifest)
        central.add_central_address(self.topo)

    def _wait_chassis_registered(self) -> None:
        """SB has every Chassis row (``wait-until``: event driven) and each has an Encap.

        ovn-controller writes a Chassis and its Encaps in one transaction, so once the rows
        exist the encap check normally passes at once; it is polled to be safe.
        """
        topo = self.topo
        args: list[str] = []
        for ch in topo.chassis:
            args += ["--", "wait-until", "Chassis", ch.name]
        try:
            central.sbctl(topo, *args)
        except LabBuildError as e:
            raise LabBuildError(
                f"not all of {', '.join(c.name for c in topo.chassis)} registered in the SB "
                f"within {topo.timeout_s:.0f} s (see ovn-controller.log in each chassis "
                f"dir): {e}"
            ) from e
        want = {ch.name for ch in topo.chassis}

        def all_have_encaps() -> bool:
            rows = central.sb_rows(topo, "Chassis", ["name", "encaps"])
            return want <= {r["name"] for r in rows if r["encaps"]}

        host.wait_for("an Encap on every chassis in the SB", all_have_encaps, topo.timeout_s)

    def _wait_tunnels(self) -> None:
        """Each chassis has a Geneve port to every other one with an ofport (vswitchd made it)."""
        topo = self.topo
        def all_tunnels(ch: ChassisSpec) -> Callable[[], bool]:
            return lambda: len(chassis.tunnel_ports(ch)) >= topo.n_chassis - 1

        for ch in topo.chassis:
            host.wait_for(f"{topo.n_chassis - 1} Geneve tunnels on {ch.name}",
                          all_tunnels(ch), topo.timeout_s)

    def _make_site(self, install: OvnInstall) -> Site:
        topo = self.topo
        ofctl = tuple(install.argv("ovs-ofctl"))

        def vm(p: PortSpec) -> VmSpec:
            return VmSpec(name=p.name, lsp=p.lsp, mac=p.mac, ip=p.ip, chassis=p.chassis,
                          tap=p.tap)

        return Site(
            name=topo.prefix,
            nb_remote=topo.nb_remote,
            sb_remote=topo.sb_remote,
            ssl=pki.files(topo, pki.ORCHESTRATOR) if topo.ssl else None,
            chassis=tuple(
                ChassisEndpoint(name=ch.name, ovs_remote=f"unix:{ch.db_sock}",
                                integration_bridge=chassis.INTEGRATION_BRIDGE, netns=ch.netns,
                                encap_ip=ch.encap_ip, controller_ctl=str(ch.controller_ctl),
                                ofctl=ofctl, agent=agents.listen_address(topo, ch),
                                agent_token_file=str(agents.token_path(topo)),
                                **agents.ssl_endpoint(topo, ch))
                for ch in topo.chassis
            ),
            vms=tuple(vm(p) for p in topo.vms),
            clients=(vm(topo.client),),
            guest_dir=str(topo.guest_dir),
            state_dir=str(topo.dir),
            extra={
                "lab_dir": str(topo.dir),
                "logical_switch": topo.switch,
                "underlay_netns": topo.underlay_netns,
                "ovs_rundir": {ch.name: str(ch.dir) for ch in topo.chassis},
                "vm_uuid": {p.name: p.vm_uuid for p in topo.ports},
                "ovn": {"install": install.name, "from": install.describe(),
                        **install.versions()},
                "spare_chassis": list(topo.spares),
                "qemu": qemu_proc.lab_record(),
                **({"orchestrator_netns": topo.central_netns} if topo.ssl else {}),
                "clustered": topo.clustered,
            },
        )

    # -- down ------------------------------------------------------------------------------

    def down(self, progress: Progress | ProgressFn | None = None) -> list[str]:
        """Remove everything this lab created; return what could not be removed.

        Order: guest processes (by their pidfiles), then the manifest in reverse (daemons,
        namespaces, directories), then any namespace with the prefix that the manifest
        missed, then the lab dir. Safe to call any number of times, in any state.
        """
        topo = self.topo
        lab_path = str(topo.dir) + "/"
        remotes = _site_remotes(topo.site_path)  # an SSL lab's ssl: remotes name no path
        connection.close_matching(lambda remote: lab_path in remote or remote in remotes)
        steps = _Steps(progress, f"lab {topo.prefix} down", total=4)
        steps.advance("stopping guest processes")
        left = self._stop_guests()
        steps.advance("undoing the manifest")
        left += self.manifest.teardown(steps)
        steps.advance("removing leftover namespaces")
        left += self._remove_leftover_netns()
        steps.advance("removing the lab directory")
        if not left and (topo.dir / LAB_MARK).exists():
            try:
                shutil.rmtree(topo.dir)
            except OSError as e:
                left.append(f"path {topo.dir}: {e}")
        steps.done()
        return left

    def _stop_guests(self) -> list[str]:
        gdir = self.topo.guest_dir
        procs: list[tuple[int, str]] = []
        for pidfile in sorted(gdir.glob("*.pid")) if gdir.is_dir() else []:
            pid = host.read_pidfile(pidfile)
            line = host.cmdline(pid) if pid is not None and pid != os.getpid() else None
            if pid is None or line is None:
                continue
            marker = next((m for m in GUEST_MARKERS if m in line), None)
            if marker is not None:
                procs.append((pid, marker))
        alive = host.kill_pids(procs, timeout=3.0)
        return [f"guest process {pid} still running after SIGKILL" for pid in alive]

    def _remove_leftover_netns(self) -> list[str]:
        """Namespaces with our prefix the manifest did not know (e.g. a crash right after
        ``ip netns add``). Our own daemons in them are stopped; a namespace used by anyone
        else (another lab with the same prefix?) is left alone and reported."""
        left: list[str] = []
        for ns in host.list_netns(self.topo.prefix):
            pids = host.netns_pids(ns)
            ours = [(p, self.topo.marker) for p in pids if host.is_ours(p, self.topo.marker)]
            host.kill_pids(ours)
            strangers = [p for p in host.netns_pids(ns) if host.cmdline(p) is not None]
            if strangers:
                left.append(f"netns {ns}: kept, used by processes this lab did not start: "
                            f"{strangers}")
                continue
            try:
                host.netns_del(ns)
            except LabError as e:
                left.append(f"netns {ns}: {e}")
        return left


def ovn_line(ovn: Mapping[str, str]) -> str:
    """``OVN 25.03.0, OVS 3.5.0 (--ovn 25.03: Debian root ...)`` for a status line."""
    return (f"OVN {ovn.get('ovn', '?')}, OVS {ovn.get('ovs', '?')} "
            f"(--ovn {ovn.get('install', '?')}: {ovn.get('from', '?')})")


def _recorded_ovn(site_path: Path) -> dict[str, str]:
    """What ``lab up`` recorded about its OVN install ({} when there is no site)."""
    try:
        recorded = Site.load(site_path).extra.get("ovn", {})
    except CutoverError:
        return {}
    return {str(k): str(v) for k, v in recorded.items()} if isinstance(recorded, dict) else {}


def _site_remotes(site_path: Path) -> set[str]:
    """The NB/SB remotes the lab's site gives ({} when there is no site)."""
    try:
        site = Site.load(site_path)
    except CutoverError:
        return set()
    return {site.nb_remote, site.sb_remote}


def _recent_log_errors(lab_dir: Path, limit: int = 5) -> list[str]:
    """The last ERR/EMER lines of the lab's daemon logs, to quote in a build error (the
    teardown that follows a failed build deletes the logs themselves)."""
    found: list[tuple[str, str]] = []
    for log in sorted(lab_dir.glob("*/*.log")):
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        found += [(line[:24], f"{log.parent.name}/{log.name}: {line}") for line in lines
                  if "|ERR|" in line or "|EMER|" in line]
    return [text for _, text in sorted(found)[-limit:]]
