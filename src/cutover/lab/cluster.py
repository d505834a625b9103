"""A clustered NB and SB (``lab up --clustered``): each a RAFT cluster of three servers.

OVN in production runs its databases clustered: three (or five) ``ovsdb-server``
processes per database, one of them the RAFT leader that commits every transaction. The
faults a migration meets there - the leader killed or partitioned, an election, clients
moving to another member - do not exist with one standalone server, so this builds the
same shape on one machine:

- member 1 is created with ``ovsdb-tool create-cluster``, members 2 and 3 with
  ``ovsdb-tool join-cluster`` pointing at member 1; each member is its own process with
  its own database file, unixctl socket and client socket (``punix:`` in the central dir);
- their RAFT addresses are ``tcp:127.0.0.<i>:6643`` (NB) / ``:6644`` (SB) inside the
  lab's own namespace ``<prefix>-db``, so the fixed ports cannot clash with another lab or
  a real OVN on the machine;
- every client (northd, ovn-controllers, agents, the orchestrator, the lab's own
  ``ovn-nbctl``/``ovn-sbctl``) is given the comma-separated list of the member sockets;
  OVSDB clients that need the leader (python-ovs's and the ctl tools' default
  ``leader_only``) find it through the ``_Server`` database, ovn-controller talks to any.

Every member is recorded in the manifest as ``ovsdb-server-<db><i>`` right after it
starts; a killed member is started again on its own database file and rejoins.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cutover.chassis import unixctl
from cutover.errors import ChassisUnreachable, LabError
from cutover.lab import host
from cutover.lab.manifest import Manifest
from cutover.lab.rootfs import install_for
from cutover.lab.topology import CLUSTER_SIZE, LabTopology

GROUP = "central"
CLUSTER_MARK = "clustered"
"""File in the central dir that marks a clustered lab (a fresh Lab object reads it)."""
DATABASES: dict[str, tuple[str, str, int]] = {
    "nb": ("OVN_Northbound", "NB_Global", 6643),
    "sb": ("OVN_Southbound", "SB_Global", 6644),
}
"""``nb``/``sb`` -> (database name, global table, RAFT port)."""


def is_clustered(topo: LabTopology) -> bool:
    """Whether the lab in ``topo.dir`` was built clustered (whatever ``topo`` says)."""
    return (topo.central_dir / CLUSTER_MARK).exists()


def member_name(db: str, i: int) -> str:
    return f"ovsdb-server-{db}{i}"


def member_names(topo: LabTopology, db: str | None = None) -> list[str]:
    """Manifest names of the members of ``db`` (both databases if None); [] standalone."""
    if not topo.clustered:
        return []
    return [member_name(d, i) for d in ([db] if db else list(DATABASES))
            for i in range(1, CLUSTER_SIZE + 1)]


def member_ctl(topo: LabTopology, db: str, i: int) -> Path:
    return topo.central_dir / f"{db}{i}.ctl"


def _raft_address(db: str, i: int) -> str:
    return f"tcp:127.0.0.{i}:{DATABASES[db][2]}"


def build_clusters(topo: LabTopology, manifest: Manifest,
                   progress: Callable[[str], None] | None = None) -> None:
    """The members' namespace, then each database's three members, each recorded as it
    starts; returns once every member reports itself a cluster member."""
    host.netns_add(topo.cluster_netns)
    manifest.add_netns(topo.cluster_netns)
    host.netns_setup(topo.cluster_netns)
    (topo.central_dir / CLUSTER_MARK).write_text("3\n")
    ovn = install_for(topo.ovn)
    env = host.daemon_env(topo.central_dir)
    for db, (dbname, _glob, _port) in DATABASES.items():
        for i in range(1, CLUSTER_SIZE + 1):
            if progress:
                progress(f"central: {member_name(db, i)} (RAFT {_raft_address(db, i)})")
            path = topo.central_dir / f"{db}{i}.db"
            path.unlink(missing_ok=True)
            if i == 1:
                host.run([*ovn.argv("ovsdb-tool"), "create-cluster", str(path),
                          ovn.schema(db), _raft_address(db, 1)], env=env)
            else:
                host.run([*ovn.argv("ovsdb-tool"), "join-cluster", str(path), dbname,
                          _raft_address(db, i), _raft_address(db, 1)], env=env)
            start_member(topo, manifest, db, i)
        for i in range(1, CLUSTER_SIZE + 1):
            host.wait_for(f"{member_name(db, i)} to join the {dbname} cluster",
                          _joined(topo, db, i), topo.timeout_s, interval=0.05)


def start_member(topo: LabTopology, manifest: Manifest, db: str, i: int) -> int:
    """Start member ``i`` of ``db`` on its database file (also again after it was killed:
    it rejoins with its own log); recorded in the manifest; returns its pid."""
    dbname, glob, _port = DATABASES[db]
    ovn = install_for(topo.ovn)
    d = topo.central_dir
    name = member_name(db, i)
    sock = topo.db_socks(db)[i - 1]
    pid = host.spawn_daemon(
        [*ovn.argv("ovsdb-server"), str(d / f"{db}{i}.db"), f"--remote=punix:{sock}",
         f"--remote=db:{dbname},{glob},connections", f"--unixctl={member_ctl(topo, db, i)}",
         f"--log-file={d / (name + '.log')}"],
        netns=topo.cluster_netns, pidfile=d / f"{name}.pid", env=host.daemon_env(d),
        timeout=topo.timeout_s,
    )
    manifest.add_process(pid, topo.marker, name, GROUP)
    return pid


def cluster_status(topo: LabTopology, db: str, i: int) -> str:
    """``cluster/status`` of one member (its text), ChassisUnreachable if it is down."""
    return unixctl.call(str(member_ctl(topo, db, i)), "cluster/status", [DATABASES[db][0]],
                        timeout=2.0)


def _field(status: str, name: str) -> str:
    for line in status.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return ""


def _joined(topo: LabTopology, db: str, i: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return _field(cluster_status(topo, db, i), "Status") == "cluster member"
        except ChassisUnreachable:
            return False

    return check


def roles(topo: LabTopology) -> dict[str, dict[str, str]]:
    """``{"NB": {"nb1": "leader", "nb2": "follower", ...}, "SB": {...}}``; a member that
    does not answer is ``down``. {} for a standalone lab."""
    if not topo.clustered:
        return {}
    return {db.upper(): {f"{db}{i}": roles_of(topo, db, i) for i in range(1, CLUSTER_SIZE + 1)}
            for db in DATABASES}


def leader(topo: LabTopology, db: str) -> int:
    """Index (1-based) of the member that is ``db``'s leader now; LabError if none is."""
    found = [i for i in range(1, CLUSTER_SIZE + 1)
             if roles_of(topo, db, i) == "leader"]
    if len(found) != 1:
        raise LabError(f"the {DATABASES[db][0]} cluster of lab {topo.prefix} has no single "
                       f"leader now ({roles(topo).get(db.upper(), {})}); an election may be "
                       "under way")
    return found[0]


def roles_of(topo: LabTopology, db: str, i: int) -> str:
    """Member ``i``'s RAFT role (``leader``, ``follower``, ``candidate``), ``down``."""
    try:
        return _field(cluster_status(topo, db, i), "Role") or "?"
    except ChassisUnreachable:
        return "down"
