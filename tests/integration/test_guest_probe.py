"""Emulated guests and the prober on real TAPs in throw-away namespaces (root only).

Topology per test (names carry this test process's pid)::

    ns A (chassis chA)                        ns B (chassis chB)
    br0 --- tvm1 (VM on its source)           br0 --- tvm1 (created mid-migration)
     |  \\-- tcl1 (prober client)               |
     +--- vA ======== veth ======== vB --------+

A Linux bridge learns MACs like a physical switch, so answers only move to chassis B
after the destination's RARP announcement re-teaches bridge A - the same reason QEMU
announces after a migration.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cutover.errors import GuestError
from cutover.guest import frames
from cutover.guest.emulated import EmulatedHypervisor
from cutover.guest.process import ControlledProcess, runs_module
from cutover.guest.tap import open_tap
from cutover.probe.analysis import summarize
from cutover.probe.client import Prober
from cutover.site import ChassisEndpoint, Site, VmSpec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for netns and TAP devices"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2"),
]

PREFIX = f"cotg{os.getpid()}"
_counter = itertools.count()

# Runs inside a namespace: bind an AF_PACKET socket, send hex frames read from stdin,
# print received frames of one ethertype as "<wall ms> <hex>" until stdin closes.
PACKET_HELPER = r"""
import os, select, socket, sys, time
iface, proto = sys.argv[1], int(sys.argv[2], 0)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
s.bind((iface, proto))
print("ready", flush=True)
pending = b""
while True:
    r, _, _ = select.select([0, s], [], [])
    if s in r:
        data = s.recv(65536)
        print(f"{time.time() * 1000:.3f} {data.hex()}", flush=True)
    if 0 in r:  # raw reads: a buffered readline would sit on a second queued line
        chunk = os.read(0, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            s.send(bytes.fromhex(line.decode()))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def add_tap(ns: str, name: str) -> None:
    ip("-n", ns, "tuntap", "add", "dev", name, "mode", "tap")
    ip("-n", ns, "link", "set", name, "master", "br0", "up")


def link_exists(ns: str, name: str) -> bool:
    return (
        subprocess.run(["ip", "-n", ns, "link", "show", name], capture_output=True).returncode == 0
    )


def wait_forwarding(ns: str, dev: str, timeout_s: float = 5.0) -> None:
    """Wait until bridge port ``dev`` forwards.

    The bridge enables a port only when the kernel's linkwatch delivers the carrier
    change, which is rate-limited (up to ~1 s, shared by every namespace on the host);
    probing before that would count the lab's own set-up as loss.
    """
    deadline = time.monotonic() + timeout_s
    state = "?"
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["bridge", "-n", ns, "-j", "link", "show", "dev", dev], capture_output=True, text=True
        ).stdout
        state = json.loads(out)[0]["state"] if out.strip() else "absent"
        if state == "forwarding":
            return
        time.sleep(0.02)
    raise AssertionError(f"bridge port {dev} in {ns} still {state} after {timeout_s} s")


def wait_events(
    hv: EmulatedHypervisor, vm: VmSpec, chassis: str, event: str, n: int
) -> list[dict[str, object]]:
    """The guest's events once ``n`` of kind ``event`` happened (the announce takes 800 ms)."""
    deadline = time.monotonic() + 5.0
    while True:
        events = hv.guest_events(vm, chassis)
        if len(events_named(events, event)) >= n or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


class PacketSocket:
    """An AF_PACKET socket on ``iface`` inside ``ns`` (via a helper process)."""

    def __init__(self, ns: str, iface: str, ethertype: int) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", PACKET_HELPER, iface, hex(ethertype)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def send(self, frame: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame.hex() + "\n")
        self.proc.stdin.flush()

    def close(self) -> list[tuple[float, bytes]]:
        """Stop capturing; every frame seen as (wall ms, bytes)."""
        out, _ = self.proc.communicate(timeout=10)
        captured = []
        for line in out.splitlines():
            t, hexdata = line.split()
            captured.append((float(t), bytes.fromhex(hexdata)))
        return captured


@dataclass
class Lab:
    site: Site
    ns_a: str
    ns_b: str
    vm: VmSpec
    client: VmSpec
    hv: EmulatedHypervisor

    @property
    def chb(self) -> ChassisEndpoint:
        return self.site.chassis_named("chB")


@pytest.fixture
def lab() -> Iterator[Lab]:
    n = next(_counter)
    ns_a, ns_b = f"{PREFIX}x{n}a", f"{PREFIX}x{n}b"
    guest_dir = tempfile.mkdtemp(prefix=f"{PREFIX}-")
    created: list[str] = []
    try:
        for ns in (ns_a, ns_b):
            ip("netns", "add", ns)
            created.append(ns)
            ip("-n", ns, "link", "add", "br0", "type", "bridge")
            ip("-n", ns, "link", "set", "br0", "up")
        ip("-n", ns_a, "link", "add", "vA", "type", "veth", "peer", "name", "vB", "netns", ns_b)
        ip("-n", ns_a, "link", "set", "vA", "master", "br0", "up")
        ip("-n", ns_b, "link", "set", "vB", "master", "br0", "up")
        add_tap(ns_a, "tvm1")
        add_tap(ns_a, "tcl1")
        wait_forwarding(ns_a, "vA")
        wait_forwarding(ns_b, "vB")
        site = Site(
            name="cotg",
            nb_remote="",
            sb_remote="",
            chassis=(
                ChassisEndpoint(name="chA", ovs_remote="unix:/nonexistent", netns=ns_a),
                ChassisEndpoint(name="chB", ovs_remote="unix:/nonexistent", netns=ns_b),
            ),
            vms=(VmSpec("vm1", "vm1", "02:00:00:00:01:0b", "10.99.0.11", "chA", "tvm1"),),
            clients=(VmSpec("cl1", "cl1", "02:00:00:00:01:02", "10.99.0.2", "chA", "tcl1"),),
            guest_dir=guest_dir,
        )
        hv = EmulatedHypervisor(site)
        yield Lab(site, ns_a, ns_b, site.vms[0], site.clients[0], hv)
    finally:
        for ns in created:
            _kill_our_processes(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(guest_dir, ignore_errors=True)


def _kill_our_processes(ns: str) -> None:
    """Stop guests a failed test left behind in our namespace (only our modules)."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    for pid in (int(p) for p in pids.split()):
        if runs_module(pid, "cutover.guest.emulator") or runs_module(pid, "cutover.probe.prober"):
            os.kill(pid, signal.SIGKILL)


def events_named(events: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    return [e for e in events if e["event"] == name]


def t_ms(event: dict[str, object]) -> float:
    value = event["t_ms"]
    assert isinstance(value, float)
    return value


# --- tests --------------------------------------------------------------------------------


def test_open_tap_never_creates_a_missing_device() -> None:
    name = f"{PREFIX}n"[:15]
    with pytest.raises(GuestError, match="does not exist"):
        open_tap(name)
    assert not Path(f"/sys/class/net/{name}").exists()


def test_guest_without_its_tap_fails_to_start_with_a_clear_error(lab: Lab) -> None:
    ip("-n", lab.ns_a, "link", "del", "tvm1")
    with pytest.raises(GuestError, match=r"tvm1.*does not exist"):
        lab.hv.ensure_running(lab.vm)
    assert lab.hv.status(lab.vm, "chA") is None
    assert not link_exists(lab.ns_a, "tvm1")


def test_bad_requests_get_ok_false_and_the_guest_keeps_serving(lab: Lab) -> None:
    lab.hv.ensure_running(lab.vm)
    control, pidfile = lab.hv.paths(lab.vm, "chA")
    bad = [
        b"not json",
        b'{"cmd":"nope"}',
        b"[1, 2]",
        b'{"cmd": 5}',
        b'{"cmd":"resume","announce":"yes"}',
    ]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(control))
        s.sendall(b"\n".join([*bad, b'{"cmd":"status"}']) + b"\n")
        buf = b""
        while buf.count(b"\n") < len(bad) + 1:
            chunk = s.recv(65536)
            assert chunk, "guest closed the connection"
            buf += chunk
    answers = [json.loads(line) for line in buf.splitlines()]
    assert [a["ok"] for a in answers] == [False] * len(bad) + [True]
    assert all(isinstance(a["error"], str) and a["error"] for a in answers[:-1])
    assert answers[-1]["state"] == "running"

    guest = ControlledProcess.connect("guest", "cutover.guest.emulator", control, pidfile)
    with pytest.raises(GuestError, match=re.escape(str(control))):
        guest.request({"cmd": "pause-everything"})
    assert guest.request({"cmd": "status"})["state"] == "running"


def test_pause_loses_probes_and_resume_brings_answers_back(lab: Lab) -> None:
    lab.hv.ensure_running(lab.vm)
    with Prober(lab.site, lab.client, lab.vm, interval_ms=2.0) as prober:
        wait_forwarding(lab.ns_a, "tvm1")
        wait_forwarding(lab.ns_a, "tcl1")
        prober.start()
        time.sleep(0.3)
        steady = summarize(prober.stop(), 2.0, prober.duplicates)
        assert steady.probes_sent > 20
        # No loss: the longest silence is the reply spacing, about one interval.
        assert steady.probes_lost == 0 and steady.loss_outage_ms == 0.0
        assert 0 < steady.blackout_ms < 20.0 and not steady.blackout_open

        prober.start()
        time.sleep(0.2)
        t_pause = lab.hv.pause_source(lab.vm, 0.0)
        time.sleep(0.2)
        lab.hv.abort(lab.vm, lab.chb)  # no destination: just resumes the paused source
        time.sleep(0.3)
        samples = prober.stop()

    s = summarize(samples, 2.0, prober.duplicates)
    assert s.probes_lost > 0 and s.blackout_ms >= 200.0 - 10.0  # paused for 200 ms
    events = wait_events(lab.hv, lab.vm, "chA", "rarp", 5)
    (resumed,) = events_named(events, "resumed")
    t_resume = t_ms(resumed)
    assert t_pause < t_resume
    # Causal bounds only: the longest silence began with a reply produced before the
    # pause (delivered within ~10 ms) and ended with one produced after the resume.
    worst = s.longest
    assert worst is not None and not worst.open
    assert worst.start_ms <= t_pause + 10.0 and worst.end_ms > t_resume
    assert any(recv is not None and sent > t_resume for _, sent, recv in samples)
    assert all(recv is None or recv >= sent for _, sent, recv in samples)

    rarps = events_named(events, "rarp")
    assert [r["detail"] for r in rarps] == [{"round": i, "sent": True} for i in range(5)]
    times = [t_ms(r) for r in rarps]
    assert times == sorted(times) and times[0] >= t_resume

    status = lab.hv.status(lab.vm, "chA")
    assert status is not None and status["state"] == "running"
    lab.hv.abort(lab.vm, lab.chb)  # idempotent: nothing paused, nothing to stop
    assert len(events_named(lab.hv.guest_events(lab.vm, "chA"), "resumed")) == 1


def test_migration_moves_answers_to_destination_after_rarp(lab: Lab) -> None:
    add_tap(lab.ns_b, "tvm1")  # plugged before the guest starts: it takes the TAP at once
    lab.hv.ensure_running(lab.vm)
    lab.hv.prepare_destination(lab.vm, lab.chb)
    status = lab.hv.status(lab.vm, "chB")
    assert status is not None and (status["state"], status["tap_open"]) == ("incoming", True)

    capture = PacketSocket(lab.ns_a, "br0", frames.ETH_P_RARP)
    try:
        with Prober(lab.site, lab.client, lab.vm, interval_ms=2.0) as prober:
            for ns, dev in ((lab.ns_a, "tvm1"), (lab.ns_a, "tcl1"), (lab.ns_b, "tvm1")):
                wait_forwarding(ns, dev)
            prober.start()
            time.sleep(0.2)
            lab.hv.copy_memory(lab.vm, lab.chb, 50.0)
            t_pause = lab.hv.pause_source(lab.vm, 0.0)
            time.sleep(0.05)
            t_switch = lab.hv.switchover(lab.vm, lab.chb)
            time.sleep(0.4)
            samples = prober.stop()
    finally:
        captured = capture.close()

    s = summarize(samples, 2.0, prober.duplicates)
    assert s.probes_lost > 0 and s.blackout_ms > 0
    worst = s.longest
    assert worst is not None and not worst.open
    assert worst.start_ms <= t_pause + 10.0 and t_pause < t_switch < worst.end_ms
    assert any(recv is not None and sent > t_switch for _, sent, recv in samples)

    dst_events = wait_events(lab.hv, lab.vm, "chB", "rarp", 5)
    rarps = events_named(dst_events, "rarp")
    assert len(rarps) == 5 and all(t_ms(r) >= t_switch for r in rarps)
    assert events_named(dst_events, "attached")

    announce = frames.rarp_announce_frame(frames.mac_bytes(lab.vm.mac))
    assert captured, "no RARP frame crossed bridge A"
    assert all(frame == announce for _, frame in captured)
    assert all(t >= t_switch for t, _ in captured)

    lab.hv.finish_source(lab.vm)
    assert lab.hv.status(lab.vm, "chA") is None
    assert not lab.hv.paths(lab.vm, "chA")[1].exists()
    status = lab.hv.status(lab.vm, "chB")
    assert status is not None and status["state"] == "running" and status["answered"] > 0


def test_incoming_guest_opens_its_tap_on_attach(lab: Lab) -> None:
    lab.hv.ensure_running(lab.vm)
    lab.hv.prepare_destination(lab.vm, lab.chb)
    status = lab.hv.status(lab.vm, "chB")
    assert status is not None and (status["state"], status["tap_open"]) == ("incoming", False)

    with pytest.raises(GuestError, match="does not exist"):
        lab.hv.attach_destination(lab.vm, lab.chb)
    assert not link_exists(lab.ns_b, "tvm1"), "attach must not create the TAP"

    add_tap(lab.ns_b, "tvm1")
    lab.hv.attach_destination(lab.vm, lab.chb)
    lab.hv.attach_destination(lab.vm, lab.chb)  # idempotent
    lab.hv.prepare_destination(lab.vm, lab.chb)  # reuses the incoming guest
    status = lab.hv.status(lab.vm, "chB")
    assert status is not None and (status["state"], status["tap_open"]) == ("incoming", True)
    assert len(events_named(lab.hv.guest_events(lab.vm, "chB"), "attached")) == 1

    # A fresh driver (as in a later CLI invocation) finds the guests by their sockets.
    fresh = EmulatedHypervisor(lab.site)
    dst_pid = int(fresh.paths(lab.vm, "chB")[1].read_text())
    fresh.abort(lab.vm, lab.chb)
    assert fresh.status(lab.vm, "chB") is None
    assert not runs_module(dst_pid, "cutover.guest.emulator")
    src = fresh.status(lab.vm, "chA")
    assert src is not None and src["state"] == "running"
    assert not events_named(fresh.guest_events(lab.vm, "chA"), "resumed")
    fresh.abort(lab.vm, lab.chb)  # idempotent


def test_guest_answers_arp_for_its_own_ip_only(lab: Lab) -> None:
    lab.hv.ensure_running(lab.vm)
    out = subprocess.run(
        ["ip", "-n", lab.ns_a, "-j", "link", "show", "br0"], check=True, capture_output=True
    ).stdout
    bridge_mac = frames.mac_bytes(json.loads(out)[0]["address"])
    vm_mac, vm_ip = frames.mac_bytes(lab.vm.mac), frames.ip_bytes(lab.vm.ip)
    asker_ip = frames.ip_bytes("10.99.0.200")
    wait_forwarding(lab.ns_a, "tvm1")
    sock = PacketSocket(lab.ns_a, "br0", frames.ETH_P_ARP)
    try:
        sock.send(frames.arp_request_frame(bridge_mac, asker_ip, frames.ip_bytes("10.99.0.99")))
        sock.send(frames.arp_request_frame(bridge_mac, asker_ip, vm_ip))
        time.sleep(0.3)
    finally:
        captured = sock.close()
    replies = []
    for _, raw in captured:
        eth = frames.parse_ethernet(raw)
        arp = None if eth is None else frames.parse_arp(eth.payload)
        if arp is not None and arp.op == frames.ARP_OP_REPLY:
            replies.append(arp)
    assert replies == [frames.Arp(frames.ARP_OP_REPLY, vm_mac, vm_ip, bridge_mac, asker_ip)]


def test_sigterm_removes_socket_and_pidfile(lab: Lab) -> None:
    lab.hv.ensure_running(lab.vm)
    control, pidfile = lab.hv.paths(lab.vm, "chA")
    pid = int(pidfile.read_text())
    assert runs_module(pid, "cutover.guest.emulator") and control.exists()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    while runs_module(pid, "cutover.guest.emulator") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not runs_module(pid, "cutover.guest.emulator")
    assert not control.exists() and not pidfile.exists()
    assert "exiting: signal SIGTERM" in control.with_suffix(".log").read_text()
