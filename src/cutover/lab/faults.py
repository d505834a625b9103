"""Faults the lab can inject into its own OVN, and the check that none is left over.

Each action names a lab process through the manifest (never by a name pattern) and acts
on its pid: ``SIGSTOP``/``SIGCONT`` (a server or northd that stops answering but keeps its
connections: what a host under memory pressure or a long fsync looks like), a restart
(``SIGTERM``, then the same command line again: the daemon reads its own database file
and clients reconnect), ``SIGKILL`` of a RAFT leader (the cluster elects another; the
member is started again later and rejoins), and ovn-controller's graceful ``exit
--restart`` followed by a new controller (what an upgrade or a config reload does).

A restarted process is recorded in the manifest again (same name and group, new pid), so
``lab status`` and ``lab down`` follow it. :meth:`LabFaults.leftovers` is the process half
of the leftover scan: every manifest process alive and not stopped, no lab process the
manifest does not know (an orphaned ``ovs-ofctl monitor``, say), no paused controller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from cutover.chassis import unixctl
from cutover.errors import ChassisUnreachable, LabError
from cutover.lab import central, chassis, cluster, host
from cutover.lab.lab import Lab
from cutover.lab.manifest import ProcessEntry

PRIVSEP_HELPER = "privsep-helper"
"""os-vif's privileged helper, which each agent starts (it daemonizes, so it is no child of
the agent; it names the agent's config file in the lab dir and goes with the namespace)."""
EXIT_TIMEOUT_S = 10.0
"""How long a daemon may take to exit (ovn-controller's ``exit --restart``: 1.3-1.65 s
measured here)."""


class LabFaults:
    """Fault actions on one running lab (see the module docstring)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.topo = lab.topo

    # -- finding processes -----------------------------------------------------------------

    def _current(self, group: str, name: str) -> ProcessEntry:
        """The latest manifest entry of ``name`` in ``group`` (a restart appends one)."""
        found = [p for p in self.lab.manifest.processes() if p.group == group and p.name == name]
        if not found:
            raise LabError(f"lab {self.topo.prefix} has no {group} {name}")
        return found[-1]

    def sb_server(self) -> ProcessEntry:
        """The SB server a fault hits: the standalone one, or the cluster's leader now."""
        if self.topo.clustered:
            return self._current(cluster.GROUP,
                                 cluster.member_name("sb", cluster.leader(self.topo, "sb")))
        return self._current(central.GROUP, central.SB_DAEMON)

    def sb_leader(self) -> ProcessEntry:
        return self._leader("sb")

    def nb_leader(self) -> ProcessEntry:
        return self._leader("nb")

    def _leader(self, db: str) -> ProcessEntry:
        if not self.topo.clustered:
            raise LabError(f"lab {self.topo.prefix} is not clustered: it has no "
                           f"{db.upper()} leader to kill (lab up --clustered)")
        return self._current(cluster.GROUP,
                             cluster.member_name(db, cluster.leader(self.topo, db)))

    def northd(self) -> ProcessEntry:
        return self._current(central.GROUP, central.NORTHD)

    def controller(self, chassis_name: str) -> ProcessEntry:
        return self._current(chassis_name, chassis.CONTROLLER)

    # -- actions ---------------------------------------------------------------------------

    def signal(self, proc: ProcessEntry, sig: signal.Signals) -> None:
        """Send ``sig`` to a lab process (only if its command line still names the lab)."""
        if not host.is_ours(proc.pid, proc.marker):
            raise LabError(f"{proc.describe()} is not running")
        os.kill(proc.pid, sig)

    def restart(self, proc: ProcessEntry, down_ms: float = 0.0, kill: bool = False) -> int:
        """Stop ``proc`` (SIGTERM, or SIGKILL if ``kill``), wait ``down_ms``, start it again
        with its own command line; record and return the new pid."""
        line = _argv(proc.pid)
        if line is None or not host.is_ours(proc.pid, proc.marker):
            raise LabError(f"{proc.describe()} is not running; cannot restart it")
        self.stop(proc, kill)
        if down_ms > 0:
            time.sleep(down_ms / 1000.0)
        return self.start_again(proc, line)

    def stop(self, proc: ProcessEntry, kill: bool = False) -> None:
        with_signal = signal.SIGKILL if kill else signal.SIGTERM
        try:
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot exit on SIGTERM
            os.kill(proc.pid, with_signal)
        except ProcessLookupError:
            return
        if not host.wait_gone([proc.pid], proc.marker, EXIT_TIMEOUT_S):
            host.kill_pids([(proc.pid, proc.marker)], timeout=0.0)

    def start_again(self, proc: ProcessEntry, argv: list[str]) -> int:
        """Run a daemon's recorded command line again (it has ``--detach`` and
        ``--pidfile=``): in its namespace, with the lab's paths, recorded in the manifest."""
        pidfile = next((Path(a.split("=", 1)[1]) for a in argv if a.startswith("--pidfile=")),
                       None)  # fmt: skip
        if pidfile is None or "--detach" not in argv:
            raise LabError(f"{proc.describe()}: cannot restart a process without --detach "
                           "and --pidfile")
        pidfile.unlink(missing_ok=True)
        host.run(argv, netns=self._netns(proc), env=host.daemon_env(pidfile.parent),
                 timeout=self.topo.timeout_s)
        pid = host.read_pidfile(pidfile)
        if pid is None:
            raise LabError(f"{proc.describe()} restarted but wrote no pid to {pidfile}")
        self.lab.manifest.add_process(pid, self.topo.marker, proc.name, proc.group)
        return pid

    def _netns(self, proc: ProcessEntry) -> str | None:
        """Where ``proc`` runs: a chassis' namespace, the members' one, or the root."""
        if proc.group != central.GROUP:
            return self.topo.chassis_named(proc.group).netns
        members = cluster.member_names(self.topo)
        return self.topo.cluster_netns if proc.name in members else None

    def restart_controller(self, chassis_name: str) -> tuple[float, float, int]:
        """``exit --restart`` the chassis' ovn-controller, wait until the old process is
        gone, start a new one; returns (exit asked ms, old gone ms, new pid)."""
        old = self.controller(chassis_name)
        ctl = self.topo.chassis_named(chassis_name).controller_ctl
        asked = time.time() * 1000.0
        with contextlib.suppress(ChassisUnreachable):  # it may close before replying
            unixctl.call(str(ctl), "exit", ["--restart"], timeout=5.0)
        if not host.wait_gone([old.pid], old.marker, EXIT_TIMEOUT_S):
            host.kill_pids([(old.pid, old.marker)], timeout=1.0)
        gone = time.time() * 1000.0
        return asked, gone, self.lab.restart_controller(chassis_name)

    # -- what is left ------------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """Process-level leftovers of the lab (see the module docstring); [] when clean."""
        problems: list[str] = []
        latest: dict[tuple[str, str], ProcessEntry] = {}
        for p in self.lab.manifest.processes():
            latest[(p.group, p.name)] = p
        for p in latest.values():
            state = _state(p.pid)
            if not host.is_ours(p.pid, p.marker):
                problems.append(f"process {p.describe()} is not running")
            elif state == "T":
                problems.append(f"process {p.describe()} is stopped (SIGSTOP)")
        for ch in self.topo.chassis:
            try:
                status = unixctl.call(str(ch.controller_ctl), "debug/status", timeout=2.0)
            except ChassisUnreachable as e:
                problems.append(f"ovn-controller of {ch.name} does not answer: {e}")
                continue
            if status.strip() != "running":
                problems.append(f"ovn-controller of {ch.name} is {status.strip()} "
                                "(debug/resume it)")
        known = {p.pid for p in self.lab.manifest.processes()} | set(self._guest_pids())
        problems += [f"process {pid} ({line[:120]}) names the lab but is not in its manifest"
                     for pid, line in _strays(self.topo.marker, known)]
        return problems

    def _guest_pids(self) -> Iterable[int]:
        """The lab's guests, and the floor's (``guests/floor/``, alive for a whole
        ``bench --floor``): they name the lab dir but are not daemons of its manifest."""
        gdir = self.topo.guest_dir
        for pidfile in sorted(gdir.rglob("*.pid")) if gdir.is_dir() else []:
            pid = host.read_pidfile(pidfile)
            if pid is not None:
                yield pid


def _argv(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode() for a in raw.split(b"\0") if a] or None


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[-1].split()[0]


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[-1].split()[1])


def _strays(marker: str, known: set[int]) -> list[tuple[int, str]]:
    """Live processes naming ``marker`` with no known process among their ancestors (a
    helper a lab daemon or agent started is its own; an orphan is re-parented to init; a
    flow monitor the calling process forgot counts too)."""
    me = os.getpid()
    out: list[tuple[int, str]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        line = host.cmdline(pid)
        if line is None or marker not in line or pid in known or pid == me:
            continue
        if PRIVSEP_HELPER in line:
            continue  # os-vif's privsep daemon of an agent: it detaches from the agent
        ancestor, seen = _parent(pid), 0
        while ancestor > 1 and ancestor not in known and seen < 64:
            ancestor, seen = _parent(ancestor), seen + 1
        if ancestor in known:
            continue
        out.append((pid, line))
    return out
