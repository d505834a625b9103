"""The manifest as a file format and its teardown of paths/processes (no root, no OVS)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.errors import LabError
from cutover.lab import host
from cutover.lab.manifest import Manifest, NetnsEntry, PathEntry, ProcessEntry


def test_record_and_read_back_in_order(tmp_path: Path) -> None:
    m = Manifest(tmp_path)
    assert not m.exists()
    assert m.entries() == []
    m.add_path(tmp_path / "a", tree=True)
    m.add_netns("cotl-hv1")
    m.add_process(123, "/x/", "ovsdb-server", "hv1")
    assert m.exists()
    assert m.entries() == [
        PathEntry(path=str(tmp_path / "a"), tree=True),
        NetnsEntry(name="cotl-hv1"),
        ProcessEntry(pid=123, marker="/x/", name="ovsdb-server", group="hv1"),
    ]
    assert m.netns() == ["cotl-hv1"]
    assert [p.pid for p in m.processes()] == [123]
    lines = (tmp_path / "manifest.json").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["path", "netns", "process"]


def test_torn_last_line_is_ignored_but_corruption_elsewhere_is_not(tmp_path: Path) -> None:
    m = Manifest(tmp_path)
    m.add_netns("cotl-ul")
    with m.path.open("a") as f:
        f.write('{"kind": "netns", "na')  # crash in the middle of a write
    assert m.entries() == [NetnsEntry(name="cotl-ul")]
    m.path.write_text('{"kind": "bogus"}\n{"kind": "netns", "name": "x"}\n')
    with pytest.raises(LabError, match="corrupt"):
        m.entries()


def test_teardown_removes_paths_in_reverse_and_is_idempotent(tmp_path: Path) -> None:
    parent = tmp_path / "root"
    lab = parent / "lab"
    lab.mkdir(parents=True)
    m = Manifest(lab)
    m.add_path(parent, tree=False)
    m.add_path(lab, tree=True)
    (lab / "central").mkdir()
    steps: list[str] = []
    assert m.teardown(steps.append) == []
    assert not parent.exists()
    assert steps == [f"removing path {lab}", f"removing path {parent}"]
    assert m.teardown() == []  # nothing recorded any more: nothing to do


def test_shared_parent_is_kept_when_not_empty(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    (tmp_path / "other-lab").mkdir()
    m = Manifest(lab)
    m.add_path(tmp_path, tree=False)
    m.add_path(lab, tree=True)
    assert m.teardown() == []
    assert tmp_path.exists() and not lab.exists()


def test_teardown_kills_only_processes_that_still_carry_the_marker(tmp_path: Path) -> None:
    marker = str(tmp_path) + "/"
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        m = Manifest(tmp_path)
        m.add_process(ours.pid, marker, "fake-daemon", "hv1")
        m.add_process(stranger.pid, marker, "recycled-pid", "hv1")
        assert m.teardown() == []
        assert ours.wait(timeout=5) != 0
        assert stranger.poll() is None  # its cmdline lacks the marker: never signalled
        assert not m.exists()
    finally:
        for p in (ours, stranger):
            p.kill()
            p.wait()


def test_failures_are_reported_and_kept_for_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    m = Manifest(lab)
    m.add_path(lab, tree=True)
    m.add_netns("cotl-hv9")

    def fail_del(name: str) -> None:
        raise LabError(f"cannot delete {name}")

    monkeypatch.setattr(host, "netns_exists", lambda name: True)
    monkeypatch.setattr(host, "netns_pids", lambda name: [])
    monkeypatch.setattr(host, "netns_del", fail_del)
    left = m.teardown()
    assert any("netns cotl-hv9" in x and "cannot delete" in x for x in left)
    assert any(f"path {lab}" in x and "kept" in x for x in left)
    assert lab.exists()
    assert m.entries() == [PathEntry(path=str(lab), tree=True), NetnsEntry(name="cotl-hv9")]
    monkeypatch.setattr(host, "netns_del", lambda name: None)
    assert m.teardown() == []
    assert not lab.exists()


def test_a_tree_outside_the_lab_dir_is_never_removed(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    m = Manifest(lab)
    m.add_path(precious, tree=True)  # e.g. a hand-edited manifest
    left = m.teardown()
    assert precious.exists()
    assert any("refused" in x for x in left)
