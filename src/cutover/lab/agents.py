"""One ``cutover agent`` per chassis, started inside its namespace like nova-compute on a node.

Each agent serves its API on ``<lab>/<chassis>/agent.sock`` (a unix socket: reachable from
the root namespace while the agent runs in the chassis one), requires the lab's bearer
token (``<lab>/agent.token``, mode 0600), and may inject faults (``--allow-faults``: the
lab's stalls pause controllers through it). Each is recorded in the manifest right after
it is spawned, and is ready when its health route answers.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from cutover.errors import LabBuildError
from cutover.lab import host
from cutover.lab.manifest import Manifest
from cutover.lab.rootfs import install_for
from cutover.lab.topology import ChassisSpec, LabTopology

AGENT = "cutover-agent"


def token_path(topo: LabTopology) -> Path:
    return topo.dir / "agent.token"


def socket_path(ch: ChassisSpec) -> Path:
    return ch.dir / "agent.sock"


def start_agents(topo: LabTopology, manifest: Manifest) -> None:
    """Start every chassis' agent at once, then wait until each answers (bounded)."""
    from cutover.agent.server import write_token  # token format lives with the agent

    token = write_token(token_path(topo))
    for ch in topo.chassis:
        argv = [host.tool("ip"), "netns", "exec", ch.netns, sys.executable, "-m", "cutover.cli",
                "--prefix", topo.prefix, "agent", "--chassis", ch.name,
                "--ovs-remote", f"unix:{ch.db_sock}", "--sb-remote", topo.sb_remote,
                "--controller-ctl", str(ch.controller_ctl),
                "--ofctl", shlex.join(install_for(ch.ovn).argv("ovs-ofctl")),
                "--listen", f"unix:{socket_path(ch)}", "--token-file", str(token_path(topo)),
                "--state-dir", str(ch.dir), "--allow-faults"]  # fmt: skip
        log = (ch.dir / f"{AGENT}.log").open("ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)  # fmt: skip
        log.close()
        manifest.add_process(proc.pid, topo.marker, AGENT, ch.name)
    for ch in topo.chassis:
        host.wait_for(f"the agent of {ch.name} to answer on {socket_path(ch)}",
                      _answers(socket_path(ch), token), topo.timeout_s, interval=0.1)


def _answers(sock: Path, token: str) -> Callable[[], bool]:
    def check() -> bool:
        if not sock.exists():
            return False
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                              base_url="http://agent", timeout=2.0) as client:  # fmt: skip
                r = client.get("/v1/health", headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError:
            return False
        if r.status_code != 200:
            raise LabBuildError(f"agent at {sock} answered {r.status_code}: {r.text[:200]}")
        return True

    return check
