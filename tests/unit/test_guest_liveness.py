"""Noticing a dead guest: pidfd exit watches, pidfile liveness, the site's guest inventory.

Real child processes (``python -m <a sleeping module>``), no OVN: the kernel's pidfd is the
thing under test, so it is not faked. Nothing here is timing-tight: a death must end a
60 s wait, and a wait on live processes must run out its (short) timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover.guest.inventory import GuestRecord, guest_files, prober_files, site_guests
from cutover.guest.process import ExitWatch, liveness
from cutover.site import ChassisEndpoint, Site, VmSpec

MODULE = "cutover_sleeper_og"


def _start(tmp_path: Path, module: str, source: str) -> subprocess.Popen[bytes]:
    """``python -m module`` running ``source``, once /proc shows it (exec'd)."""
    (tmp_path / f"{module}.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", module], env=env)
    deadline = time.monotonic() + 10
    while b"-m" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, f"{module} did not start"
        time.sleep(0.01)
    return proc


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = _start(tmp_path, MODULE, "import time\ntime.sleep(60)\n")
    yield proc
    proc.kill()
    proc.wait()


def test_a_killed_process_ends_the_wait_at_once(sleeper: subprocess.Popen[bytes]) -> None:
    with ExitWatch() as watch:
        watch.add("hv1", sleeper.pid, MODULE)
        sleeper.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        died = watch.wait(60.0)
        waited = time.monotonic() - t0
    assert died == ("hv1", sleeper.pid, "killed by SIGKILL")
    assert waited < 30.0  # the wait ended on the death, not on its 60 s timeout
    assert sleeper.wait(5) == -signal.SIGKILL  # WNOWAIT left the status to its owner


def test_the_exit_status_of_a_child_is_reported(tmp_path: Path) -> None:
    proc = _start(tmp_path, f"{MODULE}x", "import sys, time\ntime.sleep(1)\nsys.exit(3)\n")
    try:
        with ExitWatch() as watch:
            watch.add("hv2", proc.pid, f"{MODULE}x")
            died = watch.wait(60.0)
    finally:
        proc.wait(10)
    assert died == ("hv2", proc.pid, "exited with status 3")


def test_live_processes_run_out_the_timeout(sleeper: subprocess.Popen[bytes]) -> None:
    with ExitWatch() as watch:
        watch.add("hv1", sleeper.pid, MODULE)
        t0 = time.monotonic()
        assert watch.wait(0.2) is None
        assert time.monotonic() - t0 >= 0.19
    assert sleeper.poll() is None


def test_a_process_gone_before_the_watch_is_reported_without_waiting(
    sleeper: subprocess.Popen[bytes],
) -> None:
    pid = sleeper.pid
    sleeper.kill()
    sleeper.wait()
    with ExitWatch() as watch:
        watch.add("hv3", pid, MODULE)
        died = watch.wait(60.0)
    assert died is not None and died[:2] == ("hv3", pid)


def test_a_pid_running_another_program_counts_as_dead(sleeper: subprocess.Popen[bytes]) -> None:
    with ExitWatch() as watch:  # e.g. a recycled pid in a stale pidfile
        watch.add("hv1", sleeper.pid, "cutover.guest.emulator")
        assert watch.wait(60.0) is not None


def test_liveness_from_the_pidfile(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    pidfile = tmp_path / "vm1@hv1.pid"
    assert liveness(MODULE, pidfile) == ("missing", None)
    pidfile.write_text(f"{sleeper.pid}\n")
    assert liveness(MODULE, pidfile) == ("running", sleeper.pid)
    sleeper.kill()
    sleeper.wait()
    assert liveness(MODULE, pidfile) == ("dead", sleeper.pid)


def _site(guest_dir: Path) -> Site:
    def vm(name: str, chassis: str) -> VmSpec:
        return VmSpec(name, f"lsp-{name}", "02:00:00:00:00:01", "10.0.0.1", chassis, f"t{name}")

    return Site(
        name="t", nb_remote="unix:/nb", sb_remote="unix:/sb",
        chassis=tuple(ChassisEndpoint(f"hv{i}", f"unix:/hv{i}") for i in (1, 2, 3)),
        vms=(vm("vm1", "hv1"), vm("vm2", "hv2")), clients=(vm("client", "hv3"),),
        guest_dir=str(guest_dir),
    )


def test_site_guests_reads_each_guest(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    site = _site(tmp_path)
    # vm1's guest is alive as far as the pidfile goes, but runs another module than the
    # emulator: dead. vm2's has no pidfile: missing. A stray vm1 guest died on hv2.
    guest_files(tmp_path, "vm1", "hv1")[1].write_text(f"{sleeper.pid}\n")
    guest_files(tmp_path, "vm1", "hv2")[1].write_text("999999999\n")
    records = site_guests(site)
    by_key = {(r.name, r.chassis): r for r in records}
    assert by_key[("vm1", "hv1")] == GuestRecord("vm1", "hv1", "vm", "dead", sleeper.pid)
    assert by_key[("vm2", "hv2")].state == "missing"
    assert by_key[("client", "hv3")] == GuestRecord("client", "hv3", "client", "missing", None)
    assert by_key[("vm1", "hv2")].role == "stray" and by_key[("vm1", "hv2")].state == "dead"
    assert len(records) == 4
    assert prober_files(tmp_path, "client")[1].name == "client.probe.pid"


def test_what_degrades_a_lab() -> None:
    def rec(role: str, state: str) -> GuestRecord:
        return GuestRecord("vm1", "hv1", role, state, 7 if state != "missing" else None)  # type: ignore[arg-type]

    assert [rec("vm", s).degrades for s in ("running", "dead", "missing")] == [False, True, True]
    assert [rec("client", s).degrades for s in ("running", "dead", "missing")] == [
        False, True, False,
    ]
    assert [rec("stray", s).degrades for s in ("running", "dead")] == [True, False]
    assert rec("vm", "dead").describe() == (
        "vm1@hv1 dead (pid 7) - pidfile left, no process: killed or crashed"
    )
    assert rec("client", "missing").describe() == (
        "vm1@hv1 prober missing (it runs only while measuring)"
    )
