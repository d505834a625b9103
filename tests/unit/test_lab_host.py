"""host.py's guards: prerequisites, namespace filtering, and never signalling a stranger."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from cutover.children import die_with
from cutover.errors import LabBuildError, PrerequisiteError
from cutover.lab import host


def test_not_root_is_a_prerequisite_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(PrerequisiteError, match="root"):
        host.check_prerequisites()


def test_missing_tools_name_the_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    absent = {"ovn-controller", "ovs-vswitchd"}
    real_which = shutil.which

    def which(name: str, path: str | None = None) -> str | None:
        return None if name in absent else (real_which(name, path=path) or f"/usr/bin/{name}")

    monkeypatch.setattr("shutil.which", which)
    monkeypatch.setattr(host, "SCHEMAS", {"x": (__file__, "ovn-central")})
    with pytest.raises(PrerequisiteError, match="apt-get install") as e:
        host.check_prerequisites()
    assert "ovn-host" in str(e.value) and "openvswitch-switch" in str(e.value)
    assert "ovn-central" not in str(e.value)


def test_tool_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name, path=None: None)
    with pytest.raises(PrerequisiteError, match="apt-get install ovn-central"):
        host.tool("ovn-northd")


def test_run_reports_command_and_stderr() -> None:
    with pytest.raises(LabBuildError, match=r"exit 3.*oops"):
        host.run([sys.executable, "-c", "import sys; sys.stderr.write('oops'); sys.exit(3)"])
    assert host.run([sys.executable, "-c", "print('hi')"]) == "hi\n"
    with pytest.raises(LabBuildError, match="did not finish"):
        host.run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2)
    with pytest.raises(LabBuildError, match="could not start"):
        host.run(["/nonexistent/binary"])


def test_list_netns_matches_prefix_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    listing = "cotl-hv1 (id: 3)\ncotl2-hv1 (id: 4)\ncotl\ncotlx-ul\nother\ncotl-ul (id: 1)\n"

    def fake_run(argv: Sequence[str], netns: str | None = None,
                 env: Mapping[str, str] | None = None, timeout: float = 30.0,
                 check: bool = True) -> str:
        return listing

    monkeypatch.setattr(host, "run", fake_run)
    assert host.list_netns("cotl") == ["cotl", "cotl-hv1", "cotl-ul"]


def test_kill_pid_only_touches_marked_processes(tmp_path: Path) -> None:
    marker = str(tmp_path) + "/"
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert host.is_ours(ours.pid, marker)
        assert not host.is_ours(other.pid, marker)
        assert host.kill_pid(other.pid, marker)  # "gone" as far as we are concerned ...
        assert other.poll() is None  # ... but never signalled
        assert host.kill_pid(ours.pid, marker, timeout=2)
        assert ours.wait(timeout=5) != 0
        assert host.cmdline(ours.pid) is None  # reaped (or a zombie): not alive
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()


def test_read_pidfile(tmp_path: Path) -> None:
    f = tmp_path / "x.pid"
    assert host.read_pidfile(f) is None
    f.write_text("1234\n")
    assert host.read_pidfile(f) == 1234
    f.write_text("garbage")
    assert host.read_pidfile(f) is None


def test_wait_for_times_out_with_the_condition_named() -> None:
    with pytest.raises(LabBuildError, match="the moon"):
        host.wait_for("the moon", lambda: False, timeout=0.05)
    host.wait_for("now", lambda: True, timeout=0.05)


def test_a_tool_whose_parent_already_died_does_not_run(tmp_path: Path) -> None:
    """The CLI killed between fork and exec: the tool must not start orphaned (it would
    outlive the lab with the lab dir in its command line); with a live parent it runs."""
    mark = tmp_path / "ran"
    argv = ["sh", "-c", f"touch {mark}"]
    gone = subprocess.run(argv, preexec_fn=die_with(1), check=False)
    assert gone.returncode == 127 and not mark.exists()
    alive = subprocess.run(argv, preexec_fn=die_with(os.getpid()), check=False)
    assert alive.returncode == 0 and mark.exists()
