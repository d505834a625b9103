"""A ``cutover migrate`` SIGKILLed at every step boundary, then ``cutover recover``, on the
real lab (emulated guests, the agents of the lab, real OVN).

After the recovery the lab is exactly as before the migration (killed before the
switchover) or as after a finished one (killed after it): the port's NB options, its SB
binding (one chassis, no additional or requested-additional chassis), no published
``cutover-*`` key on any Chassis_Private, the VM's OVS port and TAP on its chassis only,
its guest running there only, no ovn-controller paused, no ``ovs-ofctl monitor`` of the
lab left, no open journal record, ``lab status`` not degraded; and the VM answers.

Also the issue's own scenario: ``kill -9`` during the readiness wait of a port-ready
migration whose destination controller is stalled for 8 s, then simply a new
``cutover migrate`` of the same VM: it recovers first and succeeds, no hand edits.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from labkit import lab_prefix, links, other_chassis, running_lab, vswitch

from cutover import cli
from cutover.chassis import unixctl
from cutover.chassis.base import vm_uuid
from cutover.guest.emulated import EmulatedHypervisor
from cutover.lab import Lab, host
from cutover.lab.agents import AGENT
from cutover.migration.clients import SiteClients
from cutover.migration.journal import KILL_HOOK, Journal
from cutover.migration.strategies import build_steps
from cutover.ovsdb.connection import close_all
from cutover.probe.analysis import summarize
from cutover.probe.client import Prober
from cutover.site import Site

pytestmark = [pytest.mark.integration]

PREFIX = lab_prefix("cor")
STEPS = [s.name for s in build_steps("claim")]
SWITCHOVER = STEPS.index("switchover")
# every boundary after a step, and the one between the switchover's intent and its effect
BOUNDARIES = [f"after:{s}" for s in STEPS] + ["before:switchover"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from running_lab(PREFIX)


def cutover(*args: str, kill: str | None = None, timeout: float = 60.0
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != KILL_HOOK}
    if kill is not None:
        env[KILL_HOOK] = kill
    return subprocess.run([sys.executable, "-m", "cutover.cli", "--prefix", PREFIX, *args],
                          env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)  # fmt: skip


def lab_monitors(lab: Lab) -> list[int]:
    """``ovs-ofctl monitor`` processes working on this lab's bridges (any parent)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        ours = str(lab.topo.dir).encode() in environ
        if ours and b"ovs-ofctl" in argv and b"\0monitor\0" in argv:
            found.append(int(pid))
    return found


def controller_status(site: Site, chassis: str) -> str:
    ctl = site.chassis_named(chassis).controller_ctl
    assert ctl is not None
    return unixctl.call(ctl, "debug/status").strip()


def assert_settled(lab: Lab, vm_name: str, home: str) -> None:
    """The lab as after a finished (or never started) migration of ``vm_name`` to
    ``home``; read through fresh connections (a cached IDL could lag the recovery)."""
    close_all()
    site = lab.site()
    vm = site.vm_named(vm_name)
    assert vm.chassis == home, "the site must say where the VM runs"
    clients = SiteClients.connect(site)
    options = clients.nb.lsp_options(vm.lsp)
    assert options.get("requested-chassis") == home and "activation-strategy" not in options
    binding = clients.sb.binding(vm.lsp)
    assert binding is not None
    assert (binding.chassis, binding.additional, binding.requested_additional) == (home, (), ())
    keys = {str(r.name): [k for k in r.external_ids if k.startswith("cutover-")]
            for r in clients.sb.rows("Chassis_Private")}  # fmt: skip
    assert keys == {c.name: [] for c in site.chassis}
    hv = EmulatedHypervisor(site)
    for ch in site.chassis:
        here = ch.name == home
        assert (vswitch(site, ch.name).interface(vm.tap) is not None) == here, ch.name
        assert (vm.tap in links(site, ch.name)) == here, ch.name
        assert hv.guest_state(vm, ch.name).state == ("running" if here else "missing"), ch.name
        assert controller_status(site, ch.name) == "running", ch.name
    assert lab_monitors(lab) == []
    assert Journal.in_dir(site.state_dir).open_migrations() == []
    assert lab.status(deep=True).degraded == ()
    with Prober(site, site.clients[0], vm, 5.0) as p:
        p.start()
        time.sleep(0.4)
        s = summarize(p.stop(), 5.0)
    # it answers (a probe or two may be late on a loaded 2-core machine)
    assert s.probes_sent > 30 and s.probes_lost <= max(2, s.probes_sent // 10), s


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_sigkill_at_a_step_boundary_then_recover(lab: Lab, boundary: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    site = lab.site()
    src, dst = site.vm_named("vm1").chassis, other_chassis(site, "vm1")
    killed = cutover("migrate", "vm1", "--to", dst, "--copy-ms", "50", kill=boundary)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (rec,) = Journal.in_dir(site.state_dir).open_migrations("vm1")
    when, step = boundary.split(":")
    assert rec.steps[-1].name == step
    assert rec.steps[-1].state == ("done" if when == "after" else "intent")

    status = lab.status(deep=True)
    assert status.unfinished and f"--prefix {PREFIX} recover" in status.describe()

    # a fresh process is what matters (the killed one is gone): this one, to spare a
    # Python start-up per case; the CLI's own recover runs in the tests below
    rc = cli.main(["--prefix", PREFIX, "recover", "vm1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    forward = STEPS.index(step) > SWITCHOVER or boundary == f"after:{STEPS[SWITCHOVER]}"
    home = dst if forward else src
    assert f"{'completed' if forward else 'rolled back'}: vm1 runs on {home}" in out
    assert_settled(lab, "vm1", home)


def _wait_for_step(journal: Journal, step: str, timeout_s: float = 20.0) -> None:
    """Until the running migration has journaled ``step``'s intent (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        recs = journal.open_migrations("vm1")
        if recs and recs[0].step(step) is not None:
            return
        time.sleep(0.02)
    raise AssertionError(f"the migration never reached {step}")


def test_kill_9_during_a_stalled_port_ready_wait_then_migrate_again(lab: Lab) -> None:
    """The issue's report, replayed: nothing left needs a hand edit."""
    site = lab.site()
    dst = other_chassis(site, "vm1")
    journal = Journal.in_dir(site.state_dir)
    argv = [sys.executable, "-m", "cutover.cli", "--prefix", PREFIX, "migrate", "vm1",
            "--to", dst, "--strategy", "port-ready", "--stall", "dst:8000"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_step(journal, "wait-ready")
        time.sleep(0.3)  # inside the wait: the controller is paused, readiness pending
        assert controller_status(site, dst) == "paused"
        assert lab_monitors(lab)  # the destination agent's flow monitors run
    finally:
        proc.kill()
        proc.wait()
    close_all()
    clients = SiteClients.connect(site)
    vm = site.vm_named("vm1")
    assert clients.nb.requested_chassis(vm.lsp) == [vm.chassis, dst]  # what was left
    status = cutover("lab", "status")  # the CLI: degraded (exit 1) and says what to do
    assert status.returncode == 1 and f"--prefix {PREFIX} recover" in status.stdout

    again = cutover("migrate", "vm1", "--to", dst, "--strategy", "port-ready",
                    "--ready-timeout", "5")
    assert again.returncode == 0, again.stderr
    assert "recovered: migration" in again.stdout and "rolled back" in again.stdout
    assert_settled(lab, "vm1", dst)


def test_a_journal_record_without_its_process_blocks_no_other_vm(lab: Lab) -> None:
    """An open record of vm1 (crashed) does not stop a migration of vm2; the record
    stays for ``recover`` (and ``lab status`` names it)."""
    site = lab.site()
    dst1 = other_chassis(site, "vm1")
    killed = cutover("migrate", "vm1", "--to", dst1, "--copy-ms", "50",
                     kill="after:prepare-network")
    assert killed.returncode == -signal.SIGKILL
    vm2 = site.vm_named("vm2")
    to = next(c.name for c in site.chassis if c.name not in (vm2.chassis, dst1,
                                                             site.vm_named("vm1").chassis))
    moved = cutover("migrate", "vm2", "--to", to, "--copy-ms", "50")
    assert moved.returncode == 0, moved.stderr
    assert "recovered" not in moved.stdout
    assert len(Journal.in_dir(site.state_dir).open_migrations("vm1")) == 1
    back = cutover("migrate", "vm2", "--to", vm2.chassis, "--copy-ms", "50")
    assert back.returncode == 0, back.stderr
    assert cutover("recover").returncode == 0
    nothing = cutover("recover")
    assert nothing.returncode == 0 and "nothing to recover" in nothing.stdout
    assert_settled(lab, "vm1", site.vm_named("vm1").chassis)


def test_a_second_migrate_while_one_runs_is_refused(lab: Lab) -> None:
    """An open record whose process is alive is not "recovered" under its feet."""
    site = lab.site()
    journal = Journal.in_dir(site.state_dir)
    entry = journal.begin("vm1", site.vm_named("vm1").lsp, "x", "y", "claim", {}, {})
    try:  # this test process is the live owner
        r = cutover("migrate", "vm1", "--to", other_chassis(site, "vm1"))
        assert r.returncode == 2 and "is running right now" in r.stderr
        assert cutover("recover", "vm1").returncode == 2
    finally:
        with sqlite3.connect(journal.path) as db:
            db.execute("DELETE FROM migrations WHERE id = ?", (entry.id,))


def _agent_http(site: Site, chassis: str) -> httpx.Client:
    ch = site.chassis_named(chassis)
    assert ch.agent is not None and ch.agent_token_file is not None
    token = Path(ch.agent_token_file).read_text().strip()
    return httpx.Client(transport=httpx.HTTPTransport(uds=ch.agent.removeprefix("unix:")),
                        base_url="http://agent", timeout=10.0,
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def _until(what: str, check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.05)


def test_a_killed_agent_leaves_no_monitor_and_its_restart_ends_what_it_left(lab: Lab) -> None:
    """SIGKILL of an agent in the middle of a readiness wait and a timed controller pause:
    its ``ovs-ofctl monitor`` children die with it (PDEATHSIG); started again, it withdraws
    the verdicts it had published and resumes the controller at the deadline it kept in
    its state file; told to forget the port, it removes the TAP and OVS port."""
    site = lab.site()
    vm, dst = site.vm_named("vm1"), other_chassis(site, "vm1")
    key = f"cutover-port-ready:{vm.lsp}"
    with _agent_http(site, dst) as http:
        r = http.put(f"/v1/vifs/{vm.tap}", json={"lsp": vm.lsp, "mac": vm.mac,
                     "vm_uuid": vm_uuid(vm.name), "mtu": 1442})  # fmt: skip
        assert r.status_code == 200, r.text
        r = http.put(f"/v1/port-readiness/{vm.lsp}", json={
            "tap": vm.tap, "mac": vm.mac, "request_id": str(uuid.uuid4()), "timeout_s": 600})
        assert r.status_code == 202, r.text
        assert http.post("/v1/controller/pause", json={"resume_after_ms": 4000}
                         ).status_code == 204  # fmt: skip
    paused_at = time.monotonic()
    agent = next(p for p in lab.manifest.processes()
                 if p.group == dst and p.name == AGENT and host.is_ours(p.pid, p.marker))
    _until("the agent's flow monitors to start", lambda: bool(lab_monitors(lab)))
    clients = SiteClients.connect(site)
    clients.sb.publish(dst, key, '{"id":"stale","state":"failed","error":"x"}')
    argv = Path(f"/proc/{agent.pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")

    os.kill(agent.pid, signal.SIGKILL)
    _until("the killed agent's monitors to die with it", lambda: lab_monitors(lab) == [])
    assert controller_status(site, dst) == "paused"  # nobody else would resume it

    netns = site.chassis_named(dst).netns
    assert netns is not None
    log = (lab.topo.dir / dst / f"{AGENT}.log").open("ab")
    proc = subprocess.Popen(["ip", "netns", "exec", netns, *(a.decode() for a in argv)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)  # fmt: skip
    log.close()
    lab.manifest.add_process(proc.pid, agent.marker, AGENT, dst)

    def healthy() -> bool:
        try:
            with _agent_http(site, dst) as http:
                return http.get("/v1/health").status_code == 200
        except httpx.HTTPError:
            return False

    _until("the restarted agent to answer", healthy)
    close_all()
    assert SiteClients.connect(site).sb.published(dst, key) is None  # withdrawn at start
    _until("the controller to be resumed", lambda: controller_status(site, dst) == "running")
    assert time.monotonic() - paused_at >= 3.5  # at the deadline it kept, not before
    with _agent_http(site, dst) as http:
        r = http.post("/v1/forget", json={"lsp": vm.lsp, "tap": vm.tap})
    assert r.status_code == 200 and f"TAP and OVS port {vm.tap}" in r.json()["cleaned"]
    assert_settled(lab, "vm1", vm.chassis)


def test_a_leftover_without_a_journal_record_is_taken_over_on_request(lab: Lab) -> None:
    """requested-chassis=src,dst + activation-strategy, the destination's TAP, port and
    claim, as a crash before the journal existed leaves them: ``lab status`` flags it,
    ``migrate`` refuses it naming the remedy, ``recover`` (all VMs) only names it,
    ``recover VM`` rolls it back."""
    site = lab.site()
    vm, dst = site.vm_named("vm1"), other_chassis(site, "vm1")
    clients = SiteClients.connect(site)
    with _agent_http(site, dst) as http:  # the destination's TAP and port
        r = http.put(f"/v1/vifs/{vm.tap}", json={"lsp": vm.lsp, "mac": vm.mac,
                     "vm_uuid": vm_uuid(vm.name), "mtu": 1442})  # fmt: skip
        assert r.status_code == 200, r.text
    claimed = clients.sb.watch_binding(vm.lsp, lambda b: dst in b.additional, "claim")
    clients.nb.set_requested_chassis(vm.lsp, [vm.chassis, dst], "rarp")
    claimed.wait(30.0)
    assert any("no journal record" in u for u in lab.status(deep=True).unfinished)
    refused = cutover("migrate", "vm1", "--to", dst)
    assert refused.returncode == 2 and "run 'cutover recover vm1'" in refused.stderr
    named = cutover("recover")
    assert named.returncode == 1 and f"--prefix {PREFIX} recover vm1" in named.stdout
    taken = cutover("recover", "vm1")
    assert taken.returncode == 0, taken.stderr
    assert "without a journal record: migration" in taken.stdout
    assert f"rolled back: vm1 runs on {vm.chassis}" in taken.stdout
    assert_settled(lab, "vm1", vm.chassis)
