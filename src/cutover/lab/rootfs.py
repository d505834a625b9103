"""Build (once) and cache the Debian roots that hold newer OVN/OVS builds.

``mmdebstrap --variant=apt --include=ovn-central,ovn-host,openvswitch-switch SUITE DIR
MIRROR`` takes ~20-60 s and ~240 MB, so a root is built once per suite into a cache outside
any checkout (``/var/cache/cutover/roots/<suite>``, or ``$CUTOVER_ROOT_CACHE``) and reused by
every lab, test run and bench after it. Concurrency and crashes are handled the usual way:

- an exclusive ``flock`` on ``<cache>/<suite>.lock`` serializes builders of one suite (a
  second one waits, then finds the root ready);
- the root is built in a temporary sibling dir, checked (every program runs and reports a
  version), stamped, and only then renamed into place: a root at the final path is complete;
- a root found without its stamp or missing a program (a crash mid-cleanup, a hand edit) is
  removed and rebuilt.

The mirror is read from this machine's apt sources (:mod:`cutover.lab.apt_sources`). Debian
unstable's ``Release`` file on a snapshot mirror may be past its ``Valid-Until``, so sid is
fetched with ``Acquire::Check-Valid-Until=false``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cutover.errors import LabBuildError, PrerequisiteError
from cutover.lab import apt_sources
from cutover.lab.ovn_install import OvnInstall, suite_for

DEFAULT_CACHE = Path("/var/cache/cutover/roots")
STAMP = ".cutover-root.json"
PACKAGES = ("ovn-central", "ovn-host", "openvswitch-switch")
NO_VALID_UNTIL = frozenset({"sid", "unstable"})
BUILD_TIMEOUT_S = 1200.0
PHASES = (
    ("running apt-get update", 0.10),
    ("downloading packages", 0.25),
    ("extracting archives", 0.45),
    ("installing essential", 0.55),
    ("installing remaining", 0.70),
    ("cleaning", 0.95),
    ("success", 0.95),
)
"""mmdebstrap's ``I:`` lines -> the fraction of the build done once they appear."""

BuildProgress = Callable[[str, float], None]
"""Called with a message and the fraction done (0..1)."""


def cache_dir() -> Path:
    return Path(os.environ.get("CUTOVER_ROOT_CACHE", str(DEFAULT_CACHE)))


def phase_fraction(line: str) -> float | None:
    """How far a build is once mmdebstrap printed ``line`` (None: not a milestone)."""
    text = line.lower()
    for needle, fraction in PHASES:
        if needle in text:
            return fraction
    return None


def mmdebstrap_argv(suite: str, target: Path, mirror: str) -> list[str]:
    """The build command (pure, so its options are unit-tested)."""
    argv = ["mmdebstrap", "--variant=apt", f"--include={','.join(PACKAGES)}"]
    if suite in NO_VALID_UNTIL:
        argv.append('--aptopt=Acquire::Check-Valid-Until "false"')
    return [*argv, suite, str(target), mirror]


def install_for(ovn: str) -> OvnInstall:
    """The install an ``--ovn`` choice names (not built yet: see :func:`ensure_root`)."""
    suite = suite_for(ovn)
    return OvnInstall(ovn) if suite is None else OvnInstall(ovn, cache_dir() / suite)


def is_complete(install: OvnInstall) -> bool:
    """The root exists, carries its stamp and holds every program and schema."""
    root = install.root
    return root is None or ((root / STAMP).is_file() and not install.missing())


def ensure_root(ovn: str, progress: BuildProgress | None = None) -> OvnInstall:
    """The install for ``ovn``, building its root first if it is absent or incomplete.

    Raises PrerequisiteError (no mmdebstrap, no Debian mirror in the apt sources, not root)
    or LabBuildError (the build or its check failed; the message quotes mmdebstrap's last
    lines). Nothing half-built is ever left at the final path.
    """
    install = install_for(ovn)
    suite = suite_for(ovn)
    if install.root is None or suite is None or is_complete(install):
        return install
    say = progress or (lambda _m, _f: None)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / f"{suite}.lock", lambda: say(f"waiting for another build of {suite}",
                                                      0.0)):
        if is_complete(install):
            return install
        if install.root.exists():
            say(f"removing the incomplete root {install.root}", 0.0)
            _remove(install.root)
        _build(suite, install, say)
    return install


@contextlib.contextmanager
def _locked(path: Path, waiting: Callable[[], None]) -> Iterator[None]:
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    """Move aside first (one rename: the final path is free at once), then delete."""
    aside = path.with_name(f".{path.name}.old-{os.getpid()}-{time.monotonic_ns()}")
    path.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)


def _build(suite: str, install: OvnInstall, say: BuildProgress) -> None:
    assert install.root is not None
    if os.geteuid() != 0:
        raise PrerequisiteError(f"building the Debian {suite} root needs root (mmdebstrap)")
    if shutil.which("mmdebstrap") is None:
        raise PrerequisiteError("mmdebstrap not found; run scripts/install-debs "
                                "(apt-get install mmdebstrap)")
    mirror = apt_sources.machine_mirror()
    tmp = install.root.with_name(f".{suite}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    argv = mmdebstrap_argv(suite, tmp, mirror)
    say(f"mmdebstrap {suite}: starting", 0.02)
    tail: list[str] = []
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        done = 0.02
        for line in proc.stdout:
            tail = [*tail[-7:], line.rstrip()]
            fraction = phase_fraction(line)
            if fraction is not None:
                done = max(done, fraction)
                say(f"mmdebstrap {suite}: {line.strip()[3:60]}", done)
            if time.monotonic() - started > BUILD_TIMEOUT_S:
                proc.kill()
        code = proc.wait()
        if code != 0:
            raise LabBuildError(
                f"building the Debian {suite} root failed (mmdebstrap exit {code}): "
                + " | ".join(tail) + "; check the apt sources' mirror and the network"
            )
        say(f"checking the {suite} root's programs", 0.97)
        staged = type(install)(install.name, tmp)
        absent = staged.missing()
        if absent:
            raise LabBuildError(f"the {suite} root lacks {', '.join(absent)}")
        versions = staged.versions()
        (tmp / STAMP).write_text(json.dumps(
            {"suite": suite, "mirror_from": "apt sources", "packages": list(PACKAGES),
             "versions": versions, "built_s": round(time.monotonic() - started, 1)},
            indent=2) + "\n")
        tmp.rename(install.root)
        say(f"Debian {suite} root ready: OVN {versions['ovn']}, OVS {versions['ovs']}", 1.0)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
