"""The lab on real OVS/OVN daemons: build, status, stalls, teardown after clean and dirty exits.

Needs root and the Debian OVS/OVN packages. Each test uses its own prefix (``cotl...``) and a
lab dir under pytest's tmp dir, so a failing test cannot break the next one, and always tears
its lab down. A lab builds in about a second, so most tests simply build their own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from labkit import lab_prefix
from rich.progress import Progress

from cutover.errors import LabAlreadyUp, LabBuildError, LabNotUp, PrerequisiteError
from cutover.lab import ControllerStall, Lab, LabTopology, host, topo_ovn
from cutover.lab.chassis import vsctl
from cutover.lab.topology import PortSpec
from cutover.ovsdb.connection import close_all
from cutover.ovsdb.sb import SbClient
from cutover.site import Site

COTL = lab_prefix("cotl")

pytestmark = [pytest.mark.integration]


def _prerequisites_ok() -> str | None:
    try:
        host.check_prerequisites()
    except PrerequisiteError as e:
        return str(e)
    return None


_SKIP = _prerequisites_ok()
if _SKIP is not None:
    pytestmark = [pytest.mark.integration, pytest.mark.skip(reason=_SKIP)]


def sbctl(topo: LabTopology, *args: str) -> str:
    out = subprocess.run(["ovn-sbctl", f"--db=unix:{topo.sb_sock}", "--timeout=10", *args],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def bound_chassis(topo: LabTopology, lsp: str) -> str | None:
    """Port_Binding.chassis of ``lsp`` as a chassis name, straight from ovn-sbctl."""
    uuid = sbctl(topo, "--bare", "--columns=chassis", "find", "Port_Binding",
                 f"logical_port={lsp}")
    return sbctl(topo, "--bare", "--columns=name", "list", "Chassis", uuid) if uuid else None


def wait_until(what: str, cond: Callable[[], bool], timeout: float = 10.0) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - t0


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


def marked_processes(marker: str) -> list[str]:
    """Every live process whose command line names the lab dir (verification only)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (line := host.cmdline(int(d.name))) and marker in line:
            found.append(f"{d.name}: {line}")
    return found


def assert_gone(topo: LabTopology, pids: list[int], before_links: set[str]) -> None:
    assert host.list_netns(topo.prefix) == []
    assert not any(host.is_ours(pid, topo.marker) for pid in pids)
    assert marked_processes(topo.marker) == []
    assert not topo.dir.exists()
    new_links = root_links() - before_links
    assert not [n for n in new_links if n.startswith((topo.prefix, topo.short))]


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[[str], Lab]]:
    """Build-your-own lab with a given prefix; whatever was made is torn down afterwards."""
    labs: list[Lab] = []

    def make(prefix: str) -> Lab:
        prefix = lab_prefix(prefix)
        lab = Lab(LabTopology(prefix=prefix, lab_dir=tmp_path / prefix, timeout_s=20))
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        Lab(lab.topo).down()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Site, float]]:
    """One lab for the read-only checks; built with a rich Progress to exercise that path."""
    lab = Lab(LabTopology(prefix=COTL, lab_dir=tmp_path_factory.mktemp("lab") / COTL))
    t0 = time.monotonic()
    with Progress(disable=True) as progress:
        site = lab.up(progress=progress)
    took = time.monotonic() - t0
    yield lab, site, took
    assert lab.down() == []


def test_up_builds_the_site(shared: tuple[Lab, Site, float]) -> None:
    lab, site, took = shared
    topo = lab.topo
    # a build budget, not a benchmark: ~5 s alone, several times that on a loaded 2-core box
    assert took < 60, f"lab up took {took:.1f} s"
    assert site == Site.load(topo.site_path)
    assert site.name == COTL
    assert site.nb_remote == f"unix:{topo.nb_sock}"
    assert site.sb_remote == f"unix:{topo.sb_sock}"
    assert [c.name for c in site.chassis] == ["hv1", "hv2", "hv3"]
    hv2 = site.chassis_named("hv2")
    assert hv2.ovs_remote == f"unix:{topo.dir}/hv2/db.sock"
    assert hv2.netns == f"{COTL}-hv2"
    assert hv2.encap_ip == "172.31.250.12"
    assert hv2.integration_bridge == "br-int"
    assert hv2.controller_ctl is not None and Path(hv2.controller_ctl).exists()
    assert [(v.name, v.chassis, v.ip) for v in site.vms] == [
        ("vm1", "hv1", "10.99.0.1"), ("vm2", "hv2", "10.99.0.2")]
    assert [(c.name, c.chassis, c.ip) for c in site.clients] == [("client", "hv3", "10.99.0.100")]
    assert site.guest_dir == str(topo.guest_dir) and topo.guest_dir.is_dir()
    assert lab.site() == site


def test_every_chassis_registered_with_geneve_encap(shared: tuple[Lab, Site, float]) -> None:
    topo = shared[0].topo
    assert sorted(sbctl(topo, "--bare", "--columns=name", "list", "Chassis").split()) == [
        "hv1", "hv2", "hv3"]
    for ch in topo.chassis:
        encaps = sbctl(topo, "--bare", "--columns=type,ip", "find", "Encap",
                       f"chassis_name={ch.name}").split()
        assert encaps == ["geneve", ch.encap_ip]


def test_ports_bound_on_their_home_chassis(shared: tuple[Lab, Site, float]) -> None:
    lab, site, _ = shared
    for p in (*site.vms, *site.clients):
        assert bound_chassis(lab.topo, p.lsp) == p.chassis, p.name


def test_ports_are_plugged_like_os_vif(shared: tuple[Lab, Site, float]) -> None:
    topo = shared[0].topo
    vm1 = topo.vms[0]
    hv1 = topo.chassis_named("hv1")
    want = {"iface-id": vm1.lsp, "iface-status": "active", "attached-mac": vm1.mac,
            "vm-uuid": vm1.vm_uuid}
    for key, value in want.items():
        got = vsctl(hv1, "get", "Interface", vm1.tap, f"external_ids:{key}").strip()
        assert got.strip('"') == value, key
    assert vsctl(hv1, "get", "Interface", vm1.tap, "type").strip() == '""'
    v6 = host.run(["cat", f"/proc/sys/net/ipv6/conf/{vm1.tap}/disable_ipv6"], netns=hv1.netns)
    assert v6.strip() == "1"
    # tunnels to both other chassis exist on every chassis
    for ch in topo.chassis:
        out = vsctl(ch, "--bare", "--columns=options", "find", "Interface", "type=geneve")
        remotes = re.findall(r'remote_ip="?([0-9.]+)', out)
        assert sorted(remotes) == sorted(o.encap_ip for o in topo.chassis if o.name != ch.name)


def test_up_again_is_refused_and_status_is_up(shared: tuple[Lab, Site, float]) -> None:
    lab = shared[0]
    with pytest.raises(LabAlreadyUp, match=rf"run .cutover --prefix {COTL} lab down. first"):
        lab.up()
    with pytest.raises(LabAlreadyUp):
        Lab(lab.topo).up()  # a fresh object sees it too (state is on disk, not in memory)
    st = lab.status()
    assert st.state == "up" and st.problems == ()
    assert set(st.namespaces) == {f"{COTL}-{n}" for n in ("hv1", "hv2", "hv3", "ul")}
    assert all(all(d.values()) for d in st.daemons.values())
    assert set(st.daemons) == {"central", "hv1", "hv2", "hv3"}


def test_save_site_and_describe(shared: tuple[Lab, Site, float]) -> None:
    lab, site, _ = shared
    moved = site.with_vm_on("vm1", "hv2")
    lab.save_site(moved)
    try:
        assert Lab(lab.topo).site().vm_named("vm1").chassis == "hv2"
    finally:
        lab.save_site(site)
    text = lab.status().describe()
    assert text.startswith(f"lab {COTL} is up") and "hv2: ovsdb-server up" in text


def test_down_removes_everything_and_twice_is_fine(make_lab: Callable[[str], Lab]) -> None:
    before = root_links()
    lab = make_lab("cotld")
    lab.up()
    pids = [p.pid for p in lab.manifest.processes()]
    assert len(pids) == 15  # 3 central + 3 x (ovsdb, vswitchd, controller, agent)
    t0 = time.monotonic()
    assert lab.down() == []
    assert time.monotonic() - t0 < 10
    assert_gone(lab.topo, pids, before)
    assert lab.down() == []
    assert lab.status().state == "down"
    with pytest.raises(LabNotUp):
        lab.site()


def test_crashed_cli_is_cleaned_by_a_fresh_lab(make_lab: Callable[[str], Lab]) -> None:
    before = root_links()
    lab = make_lab("cotlc")
    lab.up()
    topo = lab.topo
    pids = [p.pid for p in lab.manifest.processes()]
    del lab  # the CLI that built it is gone; only the lab dir remembers
    fresh = Lab(topo)
    assert fresh.status().state == "up"
    assert fresh.down() == []
    assert_gone(topo, pids, before)


def test_cli_killed_mid_build_is_cleaned(make_lab: Callable[[str], Lab], tmp_path: Path) -> None:
    before = root_links()
    topo = make_lab("cotlk").topo
    code = ("from pathlib import Path; from cutover.lab import Lab, LabTopology; "
            f"Lab(LabTopology(prefix='{topo.prefix}', lab_dir=Path('{topo.dir}'))).up()")
    proc = subprocess.Popen([sys.executable, "-c", code])
    manifest = topo.dir / "manifest.json"
    wait_until("a half-built lab",
               lambda: manifest.exists() and len(manifest.read_text().splitlines()) >= 8)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pids = [p.pid for p in Lab(topo).manifest.processes()]
    assert Lab(topo).status().state == "stale"
    assert Lab(topo).down() == []
    assert_gone(topo, pids, before)


def test_stale_lab_is_cleared_by_the_next_up(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab("cotls")
    lab.up()
    old = lab.manifest.processes()
    for p in old:  # a session ended: daemons gone, namespaces and files left behind
        os.kill(p.pid, signal.SIGKILL)
    assert host.wait_gone([p.pid for p in old], lab.topo.marker, 5)
    st = lab.status()
    assert st.state == "stale" and "central ovsdb-server-nb is not running" in st.problems
    with pytest.raises(LabNotUp, match="stale"):
        lab.site()
    site = lab.up()
    assert lab.status().state == "up"
    assert {p.pid for p in lab.manifest.processes()}.isdisjoint({p.pid for p in old})
    assert bound_chassis(lab.topo, site.vms[0].lsp) == "hv1"


def test_failed_build_tears_down_and_names_the_step(
    make_lab: Callable[[str], Lab], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = root_links()
    lab = make_lab("cotlb")

    def boom(topo: LabTopology) -> None:
        raise LabBuildError("injected failure")

    monkeypatch.setattr(topo_ovn, "build_logical_switch", boom)
    with pytest.raises(LabBuildError, match=r"logical switch.*injected failure.*torn down"):
        lab.up()
    assert_gone(lab.topo, [], before)


def test_down_stops_guests_by_pidfile_but_nothing_else(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab("cotlg")
    lab.up()
    topo = lab.topo
    sleeper = "import time; time.sleep(60)"
    guest = subprocess.Popen(["ip", "netns", "exec", topo.chassis[0].netns, sys.executable,
                              "-c", sleeper, "cutover.guest.emulator"])
    decoy = subprocess.Popen([sys.executable, "-c", sleeper, "not-a-guest"])
    try:
        (topo.guest_dir / "vm1.pid").write_text(f"{guest.pid}\n")
        (topo.guest_dir / "decoy.pid").write_text(f"{decoy.pid}\n")
        wait_until("guest started", lambda: host.is_ours(guest.pid, "cutover.guest"))
        assert lab.down() == []
        assert guest.wait(timeout=5) == -signal.SIGTERM
        assert decoy.poll() is None
    finally:
        for p in (guest, decoy):
            p.kill()
            p.wait()


def _extra_port(topo: LabTopology, name: str, host_no: int, chassis: str) -> PortSpec:
    return PortSpec(name=name, lsp=f"{topo.prefix}-{name}", mac=f"02:00:00:00:01:{host_no:02x}",
                    ip=f"10.99.0.{host_no}", chassis=chassis, tap=f"{topo.short}t-{name}",
                    vm_uuid=f"00000000-0000-0000-0000-0000000000{host_no:02x}")


def test_controller_stall_really_pauses(make_lab: Callable[[str], Lab]) -> None:
    lab = make_lab("cotlx")
    site = lab.up()
    topo = lab.topo
    hv1, hv2 = topo.chassis_named("hv1"), topo.chassis_named("hv2")
    ctl = site.chassis_named("hv2").controller_ctl
    assert ctl is not None
    on_hv2 = _extra_port(topo, "x2", 50, "hv2")
    on_hv1 = _extra_port(topo, "x1", 51, "hv1")

    def status() -> str:
        return host.run(["ovn-appctl", "-t", ctl, "debug/status"]).strip()

    sb = SbClient(site.sb_remote)
    # armed before the port exists: records when the SB first shows hv2 holding it
    claimed = sb.watch_binding(on_hv2.lsp, lambda b: b.chassis == "hv2", "hv2 to claim x2")
    stall = ControllerStall(ctl, 30_000)
    try:
        stall.start()
        assert status() == "paused"
        for port, ch in ((on_hv2, hv2), (on_hv1, hv1)):
            topo_ovn.add_lsp(topo, port)
            topo_ovn.plug_port(ch, port)
        # the running hv1 binds its new port: the NB -> SB -> controller path works ...
        wait_until("x1 bound on hv1", lambda: bound_chassis(topo, on_hv1.lsp) == "hv1")
        assert sbctl(topo, "--bare", "--columns=logical_port", "find", "Port_Binding",
                     f"logical_port={on_hv2.lsp}") == on_hv2.lsp  # northd did make it
        assert not claimed.fired, f"paused hv2 claimed x2: {claimed.row}"
        resuming_ms = time.time() * 1000.0
        stall.stop()
        assert status() == "running"
        # ... while the paused hv2 claims its port only once resumed: a claim made during
        # the pause would have been seen earlier (the watch sees every SB change)
        _row, seen_ms = claimed.wait(20.0)
    finally:
        stall.stop()
        claimed.cancel()
        close_all()
    assert seen_ms > resuming_ms, (seen_ms, resuming_ms)
    assert bound_chassis(topo, on_hv2.lsp) == "hv2"
    assert stall.started_ms is not None and stall.ended_ms is not None
    assert stall.started_ms < resuming_ms <= stall.ended_ms < stall.started_ms + 30_000
    stall.stop()  # idempotent

    timed = ControllerStall(ctl, 300)
    timed.start()
    assert status() == "paused"
    assert timed.wait(timeout=5)
    assert status() == "running"
    assert timed.started_ms is not None and timed.ended_ms is not None
    assert timed.ended_ms - timed.started_ms >= 290
    timed.stop()
