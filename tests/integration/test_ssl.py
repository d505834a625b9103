"""OVSDB over SSL, end to end, and a deployment config pointing at a lab that looks real.

One ``lab up --ssl`` lab: an ``ovs-pki`` PKI, NB/SB on ``pssl:`` in the underlay namespace
(unix sockets only for the lab's own ctl tools), ovn-northd, every ovn-controller and every
agent on ``ssl:`` with their own certificates, agents serving HTTPS with client
certificates. The orchestrator is the real CLI, run where a management host would be (the
underlay namespace) with ``--config`` - the lab's site written as TOML, VMs given only by
name, LSP and TAP (MAC, IP and chassis discovered from the NB/SB). A certificate of
another CA is refused, with the remote and the remedy in one line.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import lab_prefix, running_lab

from cutover import deployment
from cutover.lab import Lab, central, host, pki, topo_ovn
from cutover.lab.rootfs import install_for

PREFIX = lab_prefix("tssl")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(PREFIX, ssl=True)


@pytest.fixture
def config_file(lab: Lab, tmp_path: Path) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(deployment.to_toml(lab.site()))
    return path


def cli(lab: Lab, *argv: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in the lab's underlay namespace (where the NB/SB listen)."""
    ns = lab.topo.underlay_netns
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "cutover.cli",
                           *argv], capture_output=True, text=True, timeout=120, check=False)


def binding(lab: Lab, lsp: str) -> tuple[str, list[str]]:
    """(chassis, additional chassis) of ``lsp`` in the SB, read through the lab's socket."""
    rows = central.sb_rows(lab.topo, "Port_Binding", ["logical_port", "chassis",
                                                      "additional_chassis"])
    names = topo_ovn.chassis_names(lab.topo)
    row = next(r for r in rows if r["logical_port"] == lsp)
    extra = row["additional_chassis"]
    return names.get(row["chassis"], ""), [names[u] for u in (extra if isinstance(extra, list)
                                                                 else [extra])]


def test_everyone_speaks_ssl(lab: Lab) -> None:
    """Only pssl: (and the lab's punix) listeners; each controller's SB remote is ssl: and
    connected; northd runs with its certificate."""
    topo = lab.topo
    ovn = install_for(topo.ovn)
    sb_ctl = topo.central_dir / "ovnsb_db.ctl"
    remotes = host.run([*ovn.argv("ovs-appctl"), "-t", str(sb_ctl),
                        "ovsdb-server/list-remotes"])
    assert f"pssl:6642:{topo.central_ip}" in remotes
    assert "ptcp" not in remotes
    for ch in topo.chassis:
        status = host.run([*ovn.argv("ovn-appctl"), "-t", str(ch.controller_ctl),
                           "connection-status"])
        assert status.strip() == "connected"
    nb_conns = host.run([*ovn.argv("ovs-appctl"), "-t", str(topo.central_dir / "ovnnb_db.ctl"),
                         "ovsdb-server/list-remotes"])
    assert f"pssl:6641:{topo.central_ip}" in nb_conns
    site = lab.site()
    assert site.sb_remote.startswith("ssl:") and site.ssl is not None
    assert all(c.agent and c.agent.startswith("https://") for c in site.chassis)


def test_config_migrates_over_ssl(lab: Lab, config_file: Path) -> None:
    """claim there, port-ready back: the orchestrator, the agents' published verdicts and
    the controllers' claims all travel over TLS."""
    vm = lab.site().vm_named("vm1")
    check = cli(lab, "config", "check", "--connect", str(config_file))
    assert check.returncode == 0, check.stderr
    assert f"vm1: {vm.lsp} {vm.mac} {vm.ip} on hv1" in check.stdout  # discovered
    for dst, strategy in (("hv2", "claim"), ("hv1", "port-ready")):
        run = cli(lab, "migrate", "--config", str(config_file), "vm1", "--to", dst,
                  "--strategy", strategy)
        assert run.returncode == 0, run.stderr
        assert "migrated in" in run.stdout
        assert binding(lab, vm.lsp) == (dst, [])
        options = central.nbctl(lab.topo, "get", "Logical_Switch_Port", vm.lsp, "options")
        assert "requested-chassis" not in options or f'requested-chassis={dst}' in options
        assert "activation-strategy" not in options


@pytest.mark.parametrize(("which", "says"), [
    ("cert", "refused our certificate"),
    ("ca", "does not verify against our CA"),
])
def test_wrong_certificate_is_refused(lab: Lab, tmp_path: Path, which: str,
                                      says: str) -> None:  # fmt: skip
    """A client certificate of another CA (or trusting another CA): exit 1, one line
    naming the NB remote and the remedy; nothing was changed."""
    site = lab.site()
    rogue = pki.rogue_files(lab.topo)
    assert site.ssl is not None
    files = (dataclasses.replace(rogue, ca_cert=site.ssl.ca_cert) if which == "cert"
             else dataclasses.replace(site.ssl, ca_cert=rogue.ca_cert))
    path = tmp_path / "rogue.toml"
    path.write_text(deployment.to_toml(dataclasses.replace(site, ssl=files)))
    run = cli(lab, "config", "check", "--connect", str(path))
    assert run.returncode == 1
    err = [line for line in run.stderr.splitlines() if line.startswith("OvsdbTlsError: ")]
    assert len(err) == 1, run.stderr
    assert site.nb_remote in err[0] and says in err[0]


def test_agent_refuses_a_client_certificate_of_another_ca(lab: Lab, tmp_path: Path) -> None:
    site = lab.site()
    rogue = pki.rogue_files(lab.topo)
    chassis = tuple(dataclasses.replace(c, agent_client_cert=rogue.certificate,
                                        agent_client_key=rogue.private_key)
                    for c in site.chassis)  # fmt: skip
    path = tmp_path / "rogue-agent.toml"
    path.write_text(deployment.to_toml(dataclasses.replace(site, chassis=chassis)))
    run = cli(lab, "config", "check", "--connect", str(path))
    assert run.returncode == 1
    assert "ChassisUnreachable: agent of hv1" in run.stderr
    assert "refused our client certificate" in run.stderr


def test_remote_lists_reach_the_live_member(lab: Lab, tmp_path: Path) -> None:
    """Remotes as a cluster's member lists (one member refusing connections, as a
    stopped RAFT member does): the config is accepted and the live member answers."""
    site = lab.site()
    dead = "ssl:127.0.0.1:1"
    listed = dataclasses.replace(site, nb_remote=f"{dead},{site.nb_remote}",
                                 sb_remote=f"{site.sb_remote},{dead}")  # fmt: skip
    path = tmp_path / "cluster.toml"
    path.write_text(deployment.to_toml(listed))
    run = cli(lab, "config", "check", "--connect", str(path))
    assert run.returncode == 0, run.stderr
    assert f"NB {dead},{site.nb_remote}" in run.stdout


def test_lab_follows_a_vm_moved_by_its_own_config(lab: Lab, config_file: Path) -> None:
    """``migrate --config`` on ``lab config``'s file moves the VM without the lab's record:
    lab status must not hint restart-guests (a second vm1 on hv1), the lab's migrate must
    not advise setting requested-chassis back, and recover records where it runs."""
    lsp = lab.site().vm_named("vm1").lsp
    run = cli(lab, "migrate", "--config", str(config_file), "vm1", "--to", "hv2")
    assert run.returncode == 0, run.stderr
    try:
        status = cli(lab, "--prefix", PREFIX, "lab", "status")
        assert status.returncode == 1 and "restart-guests" not in status.stdout
        assert f"'cutover --prefix {PREFIX} recover' to record where vm1 runs" in status.stdout
        refused = cli(lab, "--prefix", PREFIX, "migrate", "vm1", "--to", "hv3")
        assert refused.returncode == 2
        assert "moved outside this site's record" in refused.stderr, refused.stderr
        assert binding(lab, lsp) == ("hv2", [])  # the refusal changed nothing
        recovered = cli(lab, "--prefix", PREFIX, "recover")
        assert recovered.returncode == 0, recovered.stderr
        assert "the lab now records it on hv2" in recovered.stdout
        assert lab.site().vm_named("vm1").chassis == "hv2"
        assert cli(lab, "--prefix", PREFIX, "lab", "status").returncode == 0
    finally:  # the other tests expect vm1 on hv1
        back = cli(lab, "migrate", "--config", str(config_file), "vm1", "--to", "hv1")
        assert back.returncode == 0, back.stderr
        if lab.site().vm_named("vm1").chassis != "hv1":
            assert cli(lab, "--prefix", PREFIX, "recover").returncode == 0


def test_status_flags_a_leftover_port_in_an_ssl_lab(lab: Lab) -> None:
    """A port left with requested-chassis=A,B and no record is flagged in an SSL lab too:
    status reads the NB through the lab's unix socket (its ssl: remote answers only in the
    underlay namespace, and status used to skip the check there)."""
    lsp = lab.site().vm_named("vm2").lsp
    central.nbctl(lab.topo, "set", "Logical_Switch_Port", lsp,
                  "options:requested-chassis=hv2,hv3")
    try:
        unfinished = lab.status(deep=True).unfinished
        assert any(f"port {lsp} of vm2 has requested-chassis=hv2,hv3" in u
                   for u in unfinished), unfinished
    finally:
        central.nbctl(lab.topo, "set", "Logical_Switch_Port", lsp,
                      "options:requested-chassis=hv2")
    assert lab.status(deep=True).unfinished == ()


def test_an_agent_refuses_another_nodes_name(lab: Lab, tmp_path: Path) -> None:
    """An agent started with --chassis of another node would plug TAPs here and publish
    readiness in that chassis' SB row: refused at start (the node's system-id), one line,
    exit 2, no socket left."""
    from cutover.lab.agents import token_path

    hv1 = lab.topo.chassis[0]
    sock = tmp_path / "a.sock"
    run = subprocess.run(
        [sys.executable, "-m", "cutover.cli", "agent", "--chassis", "hv2", "--ovs-remote",
         f"unix:{hv1.db_sock}", "--sb-remote", f"unix:{lab.topo.sb_sock}", "--listen",
         f"unix:{sock}", "--token-file", str(token_path(lab.topo))],
        capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"InputError: --chassis hv2: the Open_vSwitch DB at unix:{hv1.db_sock} belongs to "
        "chassis 'hv1' (its external_ids:system-id); give that name, or the --ovs-remote of "
        "this node"]
    assert not sock.exists()
