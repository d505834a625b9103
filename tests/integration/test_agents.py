"""Per-chassis agents on the real lab: the central side reaches chassis only through them.

A site that gives each chassis ONLY as an agent endpoint (no local OVSDB path, no
controller socket, no namespace) runs claim, port-ready and path-ready; readiness comes
back through the SB (``Chassis_Private.external_ids``) and is withdrawn afterwards; the
agents refuse unauthenticated and malformed requests without touching the node.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from labkit import lab_prefix, links, other_chassis, running_lab, vswitch

from cutover.chassis.agent_client import CHANNEL_ENV, AgentChassis
from cutover.chassis.base import vm_uuid
from cutover.guest.emulated import EmulatedHypervisor
from cutover.lab import Lab, host
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationOptions
from cutover.migration.orchestrator import migrate
from cutover.ovsdb.sb import SbClient
from cutover.site import Site

pytestmark = [pytest.mark.integration]

PREFIX = lab_prefix("cota")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(PREFIX)


def agent_only(site: Site) -> Site:
    """What a real deployment's config gives: chassis by name and agent, nothing local."""
    return replace(site, chassis=tuple(
        replace(c, ovs_remote="", controller_ctl=None, netns=None) for c in site.chassis
    ))  # fmt: skip


def agent_http(site: Site, chassis: str, token: bool = True) -> httpx.Client:
    ch = site.chassis_named(chassis)
    assert ch.agent is not None and ch.agent_token_file is not None
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {Path(ch.agent_token_file).read_text().strip()}"
    return httpx.Client(transport=httpx.HTTPTransport(uds=ch.agent.removeprefix("unix:")),
                        base_url="http://agent", headers=headers, timeout=10.0)  # fmt: skip


def published_keys(sb: SbClient) -> dict[str, list[str]]:
    return {str(r.name): sorted(k for k in r.external_ids if k.startswith("cutover-"))
            for r in sb.rows("Chassis_Private")}  # fmt: skip


def test_every_chassis_runs_an_agent(lab: Lab) -> None:
    st = lab.status()
    for ch in lab.site().chassis:
        assert st.daemons[ch.name]["cutover-agent"] is True
    with agent_http(lab.site(), "hv2") as http:
        health = http.get("/v1/health").json()
    assert health == {"chassis": "hv2", "api_version": 1, "faults_enabled": True}


def test_unauthenticated_and_malformed_requests_change_nothing(lab: Lab) -> None:
    site = lab.site()
    body = {"lsp": "nosuch", "mac": "02:00:00:00:00:99", "vm_uuid": vm_uuid("x"), "mtu": 1442}
    with agent_http(site, "hv2", token=False) as http:
        assert http.put("/v1/vifs/cotax9", json=body).status_code == 401
        assert http.get("/v1/health", headers={"Authorization": "Bearer nope"}
                        ).status_code == 401  # fmt: skip
    with agent_http(site, "hv2") as http:
        assert http.put("/v1/vifs/cotax9", json={**body, "mac": "zz"}).status_code == 422
        assert http.put("/v1/vifs/cotax9", json={**body, "mtu": "1442"}).status_code == 422
        assert http.delete("/v1/port-readiness/nosuch").status_code == 404
    assert "cotax9" not in links(site, "hv2")
    assert vswitch(site, "hv2").interface("cotax9") is None


@pytest.mark.parametrize(("strategy", "channel"), [
    ("claim", "first"), ("port-ready", "first"), ("path-ready", "first"),
    ("port-ready", "sb"),  # the SB record alone carries the verdict too
])  # fmt: skip
def test_a_site_of_agents_only_migrates(lab: Lab, strategy: str, channel: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHANNEL_ENV, channel)
    full = lab.site()
    site = agent_only(full)
    clients = SiteClients.connect(site)
    assert all(isinstance(c, AgentChassis) for c in clients.chassis.values())
    vm = full.vm_named("vm1")
    dst = other_chassis(full, "vm1")
    report = migrate(site, "vm1", dst, MigrationOptions(strategy=strategy, copy_ms=100),
                     EmulatedHypervisor(full), clients)  # fmt: skip
    lab.save_site(full.with_vm_on("vm1", dst))
    names = [e[1] for e in report.timeline]
    assert names.index("switchover") < names.index("bound")
    if strategy == "port-ready":  # ovn-installed-ts -> the orchestrator saw the SB key
        assert report.detection_latency_ms is not None and report.detection_latency_ms > 0
    if strategy != "claim":
        assert "published by the agent" in report.evidence
        # by the first channel to bring it (the long poll, normally), or the SB alone
        assert ("by the SB" in report.evidence) if channel == "sb" else (
            "by the agent's API" in report.evidence or "by the SB" in report.evidence)
        assert "ready.confirmed" in names  # the controllers were confirmed through agents
    # the destination's VIF is what os-vif writes; nothing stays published
    ids = vswitch(full, dst).interface_external_ids(vm.tap)
    assert ids is not None
    assert {k: ids[k] for k in ("iface-id", "iface-status", "attached-mac", "vm-uuid")} == {
        "iface-id": vm.lsp, "iface-status": "active", "attached-mac": vm.mac,
        "vm-uuid": vm_uuid("vm1")}  # fmt: skip
    assert all(keys == [] for keys in published_keys(clients.sb).values())
    state = clients.sb.binding(vm.lsp)
    assert state is not None and state.chassis == dst and state.additional == ()


def test_a_dead_agent_degrades_the_lab_and_restart_agents_brings_it_back(lab: Lab) -> None:
    """A killed agent leaves the lab's OVN whole: status says degraded (not stale, so the
    site still answers) with the remedy, and ``lab restart-agents`` starts exactly it."""
    old = next(p for p in lab.manifest.processes()
               if p.group == "hv2" and p.name == "cutover-agent")  # fmt: skip
    os.kill(old.pid, signal.SIGKILL)
    assert host.wait_gone([old.pid], old.marker, 5)
    st = lab.status()
    assert st.state == "up" and st.agents_down == ("hv2",)
    assert "agent of hv2 not running" in st.degraded
    assert "lab restart-agents" in st.describe()
    assert lab.site().chassis_named("hv2").agent is not None  # the site still answers
    assert lab.restart_agents() == ["hv2"]
    st = lab.status()
    assert st.agents_down == () and st.daemons["hv2"]["cutover-agent"] is True
    with agent_http(lab.site(), "hv2") as http:
        assert http.get("/v1/health").json()["chassis"] == "hv2"
    assert lab.restart_agents() == []
