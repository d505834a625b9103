"""The lab runs every daemon and CLI from the OVN install it was asked for (``--ovn``).

Run on the host's OVN by default and on a newer Debian root with ``CUTOVER_TEST_OVN`` (make
test does both). The versions are asked from the running daemons themselves (unixctl
``version``), so a daemon that silently came from the host - the trap of Debian's absolute
alternatives symlinks - fails here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import OVN, lab_prefix, running_lab

from cutover.bench.environment import site_environment
from cutover.chassis import unixctl
from cutover.lab import Lab, host
from cutover.lab.rootfs import install_for

pytestmark = [pytest.mark.integration]

PREFIX = lab_prefix("coov")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(PREFIX)


def _control_sockets(lab: Lab) -> dict[str, Path]:
    """Every lab daemon's unixctl socket, by ``group/daemon``."""
    topo = lab.topo
    found = {
        "central/ovsdb-server-nb": topo.central_dir / "ovnnb_db.ctl",
        "central/ovsdb-server-sb": topo.central_dir / "ovnsb_db.ctl",
        "central/ovn-northd": topo.central_dir / "ovn-northd.ctl",
    }
    for ch in topo.chassis:
        found[f"{ch.name}/ovsdb-server"] = ch.dir / "ovsdb-server.ctl"
        found[f"{ch.name}/ovs-vswitchd"] = ch.dir / "ovs-vswitchd.ctl"
        found[f"{ch.name}/ovn-controller"] = ch.controller_ctl
    return found


def test_every_daemon_reports_the_recorded_version(lab: Lab) -> None:
    recorded = lab.site().extra["ovn"]
    sockets = _control_sockets(lab)
    assert len(sockets) == 3 + 3 * lab.topo.n_chassis
    for name, ctl in sockets.items():
        program = name.split("/")[1].removesuffix("-nb").removesuffix("-sb")
        reply = unixctl.call(str(ctl), "version")
        assert recorded[program] in reply.splitlines()[0], (name, reply, recorded)
    # and the lab's record is what the binaries of the install report
    assert recorded["ovn"] == install_for(OVN).versions()["ovn"]


def test_every_daemon_runs_the_install_binary(lab: Lab) -> None:
    install = install_for(OVN)
    daemons = {"ovsdb-server-nb": "ovsdb-server", "ovsdb-server-sb": "ovsdb-server",
               "ovn-northd": "ovn-northd", "ovsdb-server": "ovsdb-server",
               "ovs-vswitchd": "ovs-vswitchd", "ovn-controller": "ovn-controller"}
    seen = []
    for proc in lab.manifest.processes():
        line = host.cmdline(proc.pid)
        assert line is not None, proc
        if proc.name == "cutover-agent":  # its flow checks run this OVS's ovs-ofctl
            assert f"--ofctl {' '.join(install.argv('ovs-ofctl'))} " in line, line
            continue
        program = daemons[proc.name]
        seen.append(program)
        assert line.startswith(" ".join(install.argv(program)) + " "), (proc, line)
        if install.root is not None:
            assert line.startswith(str(install.root) + "/"), line
    assert len(seen) == 3 + 3 * lab.topo.n_chassis


def test_site_carries_the_install_ofctl_and_versions(lab: Lab) -> None:
    site = lab.site()
    install = install_for(OVN)
    assert {c.ofctl for c in site.chassis} == {tuple(install.argv("ovs-ofctl"))}
    out = subprocess.run([*site.chassis[0].ofctl, "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert site.extra["ovn"]["ovs"] in out
    env = site_environment(site.extra)
    assert env["ovn"] == site.extra["ovn"]["ovn"]
    assert env["ovn_install"].startswith(OVN + " (")
    status = lab.status().describe()
    assert f"OVN {site.extra['ovn']['ovn']}, OVS {site.extra['ovn']['ovs']}" in status


def test_cli_rejects_an_unknown_ovn_before_building(tmp_path: Path) -> None:
    prefix = lab_prefix("coox")
    proc = subprocess.run(
        [sys.executable, "-m", "cutover.cli", "--prefix", prefix, "lab", "up", "--ovn",
         "24.99"], capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("InputError: argument --ovn: '24.99'")
    assert not Path(f"/tmp/cutover/{prefix}").exists()
    assert host.list_netns(prefix) == []
