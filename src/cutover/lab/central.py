"""The OVN central node: NB and SB ``ovsdb-server`` plus ``ovn-northd``, in the root netns
(an SSL lab: in the underlay namespace, listening on ``pssl:`` there too).

Both databases listen on unix sockets only, in ``lab_dir/central``: a filesystem socket is
reachable from every chassis namespace (each of which has its own loopback), needs no port
number that could clash with a real OVN on the same machine, and disappears with the lab.
The ``nbctl``/``sbctl`` helpers here are the lab's only way to talk to the central DBs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cutover.lab import cluster, host, pki
from cutover.lab.manifest import Manifest
from cutover.lab.rootfs import install_for
from cutover.lab.topology import LabTopology

GROUP = "central"
NB_DAEMON = "ovsdb-server-nb"
SB_DAEMON = "ovsdb-server-sb"
NORTHD = "ovn-northd"
DAEMONS = (NB_DAEMON, SB_DAEMON, NORTHD)


def central_env(topo: LabTopology) -> dict[str, str]:
    """Point every OVS/OVN default path (run, db, log dirs) at the lab, never /var/run."""
    return host.daemon_env(topo.central_dir)


def nbctl(topo: LabTopology, *args: str, timeout: float | None = None) -> str:
    """Run ``ovn-nbctl`` against the lab's NB; ``--timeout`` bounds any ``--wait``."""
    t = timeout if timeout is not None else topo.timeout_s
    return host.run(
        [*install_for(topo.ovn).argv("ovn-nbctl"), f"--db={topo.local_remote('nb')}",
         f"--timeout={max(1, int(t))}", *args],
        env=central_env(topo), timeout=t + 5,
    )


def sbctl(topo: LabTopology, *args: str, timeout: float | None = None) -> str:
    """Run ``ovn-sbctl`` against the lab's SB; ``--timeout`` bounds ``wait-until``."""
    t = timeout if timeout is not None else topo.timeout_s
    return host.run(
        [*install_for(topo.ovn).argv("ovn-sbctl"), f"--db={topo.local_remote('sb')}",
         f"--timeout={max(1, int(t))}", *args],
        env=central_env(topo), timeout=t + 5,
    )


def sb_rows(topo: LabTopology, table: str, columns: list[str]) -> list[dict[str, Any]]:
    """SB rows as dicts (``--format=json``), with OVSDB's ``["uuid", x]``/``["set", [...]]``
    wrappers unpacked to a string or a list, so callers can compare plain values."""
    out = sbctl(topo, "--format=json", f"--columns={','.join(columns)}", "list", table)
    doc = json.loads(out)
    return [dict(zip(doc["headings"], map(_plain, row), strict=True)) for row in doc["data"]]


def _plain(v: Any) -> Any:
    if isinstance(v, list) and len(v) == 2 and v[0] in ("uuid", "named-uuid"):
        return v[1]
    if isinstance(v, list) and len(v) == 2 and v[0] == "set":
        return [_plain(x) for x in v[1]]
    if isinstance(v, list) and len(v) == 2 and v[0] == "map":
        return {str(k): _plain(x) for k, x in v[1]}
    return v


def build_central(
    topo: LabTopology, manifest: Manifest, progress: Callable[[str], None] | None = None
) -> None:
    """Create both databases, start their servers and northd; each recorded as it starts."""
    d = topo.central_dir
    d.mkdir(parents=True, exist_ok=True)
    env = central_env(topo)
    ovn = install_for(topo.ovn)
    if topo.clustered:
        cluster.build_clusters(topo, manifest, progress)
    for daemon, schema, sock, dbname, glob in (
        (NB_DAEMON, ovn.schema("nb"), topo.nb_sock, "OVN_Northbound", "NB_Global"),
        (SB_DAEMON, ovn.schema("sb"), topo.sb_sock, "OVN_Southbound", "SB_Global"),
    ):
        if topo.clustered:
            break
        if progress:
            progress(f"central: {daemon}")
        db = d / f"{sock.stem}.db"
        db.unlink(missing_ok=True)
        host.run([*ovn.argv("ovsdb-tool"), "create", str(db), schema], env=env)
        pid = host.spawn_daemon(
            [*ovn.argv("ovsdb-server"), str(db), f"--remote=punix:{sock}",
             f"--remote=db:{dbname},{glob},connections",
             f"--unixctl={d / (sock.stem + '.ctl')}", f"--log-file={d / (daemon + '.log')}",
             *ssl_listener(topo, dbname)],
            netns=topo.central_netns, pidfile=d / f"{daemon}.pid", env=env, timeout=topo.timeout_s,
        )
        manifest.add_process(pid, topo.marker, daemon, GROUP)
    nbctl(topo, "init")
    sbctl(topo, "init")
    if progress:
        progress("central: ovn-northd")
    pid = host.spawn_daemon(
        [*ovn.argv("ovn-northd"), f"--ovnnb-db={topo.nb_remote}",
         f"--ovnsb-db={topo.sb_remote}", f"--unixctl={d / 'ovn-northd.ctl'}",
         f"--log-file={d / 'ovn-northd.log'}",
         *(pki.server_options(topo, pki.NORTHD) if topo.ssl else [])],
        netns=topo.central_netns, pidfile=d / f"{NORTHD}.pid", env=env, timeout=topo.timeout_s,
    )
    manifest.add_process(pid, topo.marker, NORTHD, GROUP)


def ssl_listener(topo: LabTopology, dbname: str) -> list[str]:
    """An SSL lab's ``pssl:`` listener and server certificate ([] otherwise); the unix
    socket stays, for the lab's own ``nbctl``/``sbctl`` on the central node."""
    if not topo.ssl:
        return []
    remote = topo.nb_remote if dbname == "OVN_Northbound" else topo.sb_remote
    port = remote.rpartition(":")[2]
    name = "nb" if dbname == "OVN_Northbound" else "sb"
    return [f"--remote=pssl:{port}:{topo.central_ip}", *pki.server_options(topo, name)]


def add_central_address(topo: LabTopology) -> None:
    """An SSL lab's central address, on the underlay bridge in its namespace (the SSL
    listeners bind it: it must exist before the servers start)."""
    prefixlen = topo.underlay_subnet.split("/")[1]
    host.run([host.tool("ip"), "-n", topo.underlay_netns, "addr", "add",
              f"{topo.central_ip}/{prefixlen}", "dev", topo.underlay_bridge])
    # the chassis' userspace datapath takes no offloaded frames (see cutover.lab.offload)
    host.run([sys.executable, "-m", "cutover.lab.offload", topo.underlay_bridge],
             netns=topo.underlay_netns)


def log_paths(topo: LabTopology) -> list[Path]:
    """Where to look when a build step fails (quoted in error messages)."""
    return [topo.central_dir / f"{n}.log" for n in (*DAEMONS, *cluster.member_names(topo))]


def db_alive(topo: LabTopology, manifest: Manifest, db: str) -> bool:
    """Whether a server of ``db`` (``nb``/``sb``) runs: the standalone one or a member."""
    names = {NB_DAEMON if db == "nb" else SB_DAEMON, *cluster.member_names(topo, db)}
    return any(p.group == GROUP and p.name in names and host.is_ours(p.pid, p.marker)
               for p in manifest.processes())
