"""The lab's undo log: every resource is recorded the moment it exists, undone in reverse.

The manifest is what makes ``cutover lab down`` work after anything - a failed build, a
crashed CLI, a killed session: it lives in the lab directory as JSON lines (one object per
resource), each line appended and fsynced right after the resource was created, so at most
the resource being created at the instant of a crash is unknown to it. Teardown walks it
backwards, tolerates what is already gone, and keeps (rewrites) only the entries it could
not undo, so a second ``down`` retries exactly those.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cutover.errors import LabError
from cutover.lab import host

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class NetnsEntry:
    name: str
    kind: str = "netns"

    def describe(self) -> str:
        return f"netns {self.name}"


@dataclass(frozen=True)
class ProcessEntry:
    pid: int
    marker: str
    """Substring the pid's /proc cmdline must contain for us to signal it (the lab dir)."""
    name: str
    group: str
    """Which part of the lab runs it: ``central`` or a chassis name."""
    kind: str = "process"

    def describe(self) -> str:
        return f"{self.group} {self.name} (pid {self.pid})"


@dataclass(frozen=True)
class PathEntry:
    path: str
    tree: bool
    """True: remove the whole tree (a directory we own); False: rmdir only if empty."""
    kind: str = "path"

    def describe(self) -> str:
        return f"path {self.path}"


Entry = NetnsEntry | ProcessEntry | PathEntry


def _entry_from_dict(d: dict[str, Any]) -> Entry:
    kind = d.get("kind")
    if kind == "netns":
        return NetnsEntry(name=str(d["name"]))
    if kind == "process":
        return ProcessEntry(
            pid=int(d["pid"]), marker=str(d["marker"]), name=str(d["name"]),
            group=str(d["group"]),
        )
    if kind == "path":
        return PathEntry(path=str(d["path"]), tree=bool(d["tree"]))
    raise ValueError(f"unknown manifest entry kind {kind!r}")


class Manifest:
    """Append-only record of what one lab created, in ``lab_dir/manifest.json``."""

    def __init__(self, lab_dir: Path) -> None:
        self.lab_dir = lab_dir
        self.path = lab_dir / MANIFEST_NAME

    def exists(self) -> bool:
        return self.path.exists()

    # -- recording -------------------------------------------------------------------------

    def record(self, entry: Entry) -> None:
        """Append one entry and fsync it: after this returns, a crash cannot lose it."""
        line = json.dumps(asdict(entry), sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def add_netns(self, name: str) -> None:
        self.record(NetnsEntry(name=name))

    def add_process(self, pid: int, marker: str, name: str, group: str) -> None:
        self.record(ProcessEntry(pid=pid, marker=marker, name=name, group=group))

    def add_path(self, path: Path, tree: bool = True) -> None:
        self.record(PathEntry(path=str(path), tree=tree))

    # -- reading ---------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """All recorded entries, oldest first; a torn last line (crash mid-write) is skipped."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out: list[Entry] = []
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                out.append(_entry_from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as e:
                if i == len(lines) - 1:
                    continue
                raise LabError(f"manifest {self.path} line {i + 1} is corrupt ({e})") from e
        return out

    def processes(self) -> list[ProcessEntry]:
        return [e for e in self.entries() if isinstance(e, ProcessEntry)]

    def netns(self) -> list[str]:
        return [e.name for e in self.entries() if isinstance(e, NetnsEntry)]

    # -- undoing ---------------------------------------------------------------------------

    def teardown(self, progress: Callable[[str], None] | None = None) -> list[str]:
        """Undo every entry in reverse order; return what could not be removed (and why).

        Consecutive processes (one chassis' daemons) are signalled together and awaited
        together, which keeps the reverse order between groups but not the serial wait.
        Idempotent: a second call after success finds no manifest and does nothing.
        """
        entries = self.entries()
        failed: list[tuple[Entry, str]] = []
        i = len(entries) - 1
        while i >= 0:
            e = entries[i]
            if isinstance(e, ProcessEntry):
                batch: list[ProcessEntry] = []
                while i >= 0 and isinstance(entries[i], ProcessEntry):
                    pe = entries[i]
                    assert isinstance(pe, ProcessEntry)
                    batch.append(pe)
                    i -= 1
                if progress:
                    progress("stopping " + ", ".join(p.describe() for p in batch))
                failed += [(p, "still running after SIGKILL") for p in _kill_batch(batch)]
                continue
            if progress:
                progress("removing " + e.describe())
            why = self._undo(e, has_failures=bool(failed))
            if why is not None:
                failed.append((e, why))
            i -= 1
        self._finish([e for e, _ in failed], entries)
        return [f"{e.describe()}: {why}" for e, why in failed]

    def _undo(self, e: Entry, has_failures: bool) -> str | None:
        """Undo one netns or path entry; None on success, else why it is still there."""
        try:
            if isinstance(e, NetnsEntry):
                pids = host.netns_pids(e.name) if host.netns_exists(e.name) else []
                # Helpers our daemons started (os-vif's privsep daemon, spawned by the agent
                # and orphaned if the agent was killed) run in our namespace AND name our lab
                # dir (their config file is in it): ours to stop. Anything else is reported.
                marker = str(self.lab_dir) + "/"
                ours = [(pid, marker) for pid in pids if host.is_ours(pid, marker)]
                left = host.kill_pids(ours, timeout=2.0)
                strangers = [p for p in pids if (p, marker) not in ours or p in left]
                host.netns_del(e.name)
                if strangers:
                    return f"deleted, but processes we did not start still run in it: {strangers}"
            elif isinstance(e, PathEntry):
                return self._remove_path(e, has_failures)
        except LabError as err:
            return str(err)
        return None

    def _remove_path(self, e: PathEntry, has_failures: bool) -> str | None:
        p = Path(e.path)
        if has_failures and (p == self.lab_dir or p in self.lab_dir.parents):
            return "kept: it holds the manifest of what could not be removed"
        if e.tree and p != self.lab_dir and self.lab_dir not in p.parents:
            return f"refused: a whole tree is only removed inside {self.lab_dir}"
        try:
            if e.tree:
                shutil.rmtree(p)
            elif not any(p.iterdir()):
                p.rmdir()  # a shared parent (e.g. /tmp/cutover): only when nothing else is in it
        except FileNotFoundError:
            pass
        except OSError as err:
            return str(err)
        return None

    def _finish(self, remaining: list[Entry], entries: list[Entry]) -> None:
        """Drop the manifest when all is gone; else rewrite it with what is left, in order."""
        if not remaining:
            self.path.unlink(missing_ok=True)
            return
        keep = set(map(id, remaining))
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(
            json.dumps(asdict(e), sort_keys=True) + "\n" for e in entries if id(e) in keep
        ))
        tmp.replace(self.path)


def _kill_batch(batch: list[ProcessEntry], timeout: float = 5.0) -> list[ProcessEntry]:
    """SIGTERM all, wait for all, SIGKILL stragglers; return those still alive after that."""
    alive = set(host.kill_pids([(p.pid, p.marker) for p in batch], timeout))
    return [p for p in batch if p.pid in alive]
