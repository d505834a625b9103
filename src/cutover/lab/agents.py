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
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from cutover.errors import ChassisUnreachable, LabBuildError
from cutover.lab import host, pki
from cutover.lab.manifest import Manifest
from cutover.lab.rootfs import install_for
from cutover.lab.topology import ChassisSpec, LabTopology
from cutover.site import ChassisEndpoint

AGENT = "cutover-agent"


def token_path(topo: LabTopology) -> Path:
    return topo.dir / "agent.token"


def socket_path(ch: ChassisSpec) -> Path:
    return ch.dir / "agent.sock"


AGENT_PORT = 8443


def listen_address(topo: LabTopology, ch: ChassisSpec) -> str:
    """Where the agent serves: its unix socket, or in an SSL lab HTTPS on the chassis'
    underlay address (with a server certificate, requiring client certificates), reached
    from the underlay namespace like a hypervisor's agent on its management network."""
    if topo.ssl:
        return f"https://{ch.encap_ip}:{AGENT_PORT}"
    return f"unix:{socket_path(ch)}"


def start_agents(topo: LabTopology, manifest: Manifest) -> None:
    """Start every chassis' agent at once, then wait until each answers (bounded)."""
    from cutover.agent.server import write_token  # token format lives with the agent

    token = write_token(token_path(topo))
    for ch in topo.chassis:
        start_agent(topo, manifest, ch)
    if topo.ssl:
        return  # reached from the underlay namespace: the lab waits with wait_answering
    for ch in topo.chassis:
        wait_agent(topo, ch, token)


def start_agent(topo: LabTopology, manifest: Manifest, ch: ChassisSpec) -> int:
    """Spawn ``ch``'s agent in its namespace and record it in the manifest (a later entry
    of the same chassis and name supersedes an earlier one); returns its pid."""
    argv = [host.tool("ip"), "netns", "exec", ch.netns, sys.executable, "-m", "cutover.cli",
            "--prefix", topo.prefix, "agent", "--chassis", ch.name,
            "--ovs-remote", f"unix:{ch.db_sock}", "--sb-remote", topo.sb_remote,
            *_ssl_options(topo, ch),
            "--controller-ctl", str(ch.controller_ctl),
            "--ofctl", shlex.join(install_for(ch.ovn).argv("ovs-ofctl")),
            "--listen", listen_address(topo, ch), "--token-file", str(token_path(topo)),
            "--state-dir", str(ch.dir), "--allow-faults"]  # fmt: skip
    log = (ch.dir / f"{AGENT}.log").open("ab")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)  # fmt: skip
    log.close()
    manifest.add_process(proc.pid, topo.marker, AGENT, ch.name)
    return proc.pid


def wait_agent(topo: LabTopology, ch: ChassisSpec, token: str) -> None:
    """Until ``ch``'s agent answers its health route on its unix socket (bounded:
    LabBuildError naming the socket)."""
    host.wait_for(f"the agent of {ch.name} to answer on {socket_path(ch)}",
                  _answers(socket_path(ch), token), topo.timeout_s, interval=0.1)


def wait_answering(topo: LabTopology, endpoints: Mapping[str, ChassisEndpoint]) -> None:
    """An SSL lab's agents answer their health route over HTTPS with certificates both
    ways, asked from the underlay namespace (bounded)."""
    from cutover.chassis.agent_client import AgentChassis

    def answers(endpoint: ChassisEndpoint) -> Callable[[], bool]:
        def check() -> bool:
            try:
                AgentChassis(endpoint).request("GET", "/v1/health")
            except ChassisUnreachable:
                return False
            return True
        return check

    def wait_all() -> None:
        for e in endpoints.values():
            host.wait_for(f"the agent of {e.name} to answer on {e.agent}", answers(e),
                          topo.timeout_s, interval=0.1)

    host.in_netns(topo.central_netns, wait_all)


def ssl_endpoint(topo: LabTopology, ch: ChassisSpec) -> dict[str, str]:
    """An SSL lab's ChassisEndpoint TLS fields: the lab CA, the orchestrator's cert."""
    if not topo.ssl:
        return {}
    f = pki.files(topo, pki.ORCHESTRATOR)
    return {"agent_ca": f.ca_cert, "agent_client_cert": f.certificate,
            "agent_client_key": f.private_key}


def _ssl_options(topo: LabTopology, ch: ChassisSpec) -> list[str]:
    """An SSL lab's agent reaches the SB with its own certificate (``agent-hvN``)."""
    if not topo.ssl:
        return []
    f = pki.files(topo, f"agent-{ch.name}")
    return ["--ovsdb-ssl-key", f.private_key, "--ovsdb-ssl-cert", f.certificate,
            "--ovsdb-ssl-ca", f.ca_cert, "--tls-cert", f.certificate, "--tls-key",
            f.private_key, "--tls-client-ca", f.ca_cert]


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
