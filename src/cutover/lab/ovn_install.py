"""Which OVN/OVS the lab runs: the host's packages, or a Debian root of a newer suite.

One :class:`OvnInstall` answers, for every OVN/OVS program the lab starts (daemons and CLIs
alike), the argv prefix that runs *that* installation's binary, and where its schemas are.
The lab's process launching asks it everywhere, so no code path can silently fall back to
the host's binary.

A root is used without chroot and without mounts: each binary is started through the
root's own dynamic loader with the root's library directories
(``ROOT/lib64/ld-linux-x86-64.so.2 --library-path ROOT/usr/lib/...:ROOT/lib/... BINARY``),
so it runs in whatever network namespace the caller is in and sees the lab dir as is.
Debian installs some programs as absolute alternatives symlinks
(``/usr/sbin/ovs-vswitchd -> /etc/alternatives/ovs-vswitchd -> /usr/lib/...``): followed on
the host they would load the *host's* binary, so every link is resolved inside the root
(:func:`resolve_in_root`), and :meth:`OvnInstall.versions` asks each binary what it is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cutover.errors import InputError, LabBuildError, PrerequisiteError

OVN_CHOICES: Mapping[str, str | None] = {"host": None, "25.03": "trixie", "26.03": "sid"}
"""``--ovn`` value -> Debian suite whose packages provide it (None: the host's own)."""

HOST_OVN = "host"
LOADER = "lib64/ld-linux-x86-64.so.2"
LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")
BIN_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")
SCHEMA_PATHS: Mapping[str, str] = {
    "vswitch": "usr/share/openvswitch/vswitch.ovsschema",
    "nb": "usr/share/ovn/ovn-nb.ovsschema",
    "sb": "usr/share/ovn/ovn-sb.ovsschema",
}
"""Schema -> its path relative to ``/`` (the host) or to the root."""
PROGRAMS = ("ovsdb-server", "ovsdb-tool", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl",
            "ovs-appctl", "ovn-northd", "ovn-nbctl", "ovn-sbctl", "ovn-controller",
            "ovn-appctl")
"""Every OVN/OVS program the lab or its readiness checks run."""
VERSIONED = ("ovn-northd", "ovn-controller", "ovsdb-server", "ovs-vswitchd", "ovs-ofctl",
             "ovn-nbctl")
"""Programs whose ``--version`` the lab records (daemons plus the CLIs readiness uses)."""
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_VERSION_RE = re.compile(r"(\d+\.\d+\.\d+)")
MAX_LINKS = 40


def parse_ovn(value: str) -> str:
    """Validate an ``--ovn`` value (InputError naming the choices)."""
    if value not in OVN_CHOICES:
        raise InputError(
            f"--ovn {value!r} is not available: choose one of {', '.join(OVN_CHOICES)} "
            "(host = this machine's packages, 25.03 = Debian trixie, 26.03 = Debian sid)"
        )
    return value


def suite_for(ovn: str) -> str | None:
    return OVN_CHOICES[parse_ovn(ovn)]


def parse_version(text: str) -> str | None:
    """``ovs-vswitchd (Open vSwitch) 3.5.0`` -> ``3.5.0``; None if no x.y.z in the text."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    match = _VERSION_RE.search(first)
    return match.group(1) if match else None


def resolve_in_root(root: Path, path: str) -> Path:
    """``path`` (absolute, as seen inside ``root``) with every symlink resolved *inside*
    ``root``: absolute targets are re-rooted, ``..`` never climbs above the root.

    Returns the host path of the final file; LabBuildError on a loop or a dangling link.
    """
    parts = list(PurePosixPath(path).parts[1:])
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        current = root.joinpath(*done, part)
        if current.is_symlink():
            hops += 1
            if hops > MAX_LINKS:
                raise LabBuildError(f"too many symlinks resolving {path} in {root}")
            target = os.readlink(current)
            if target.startswith("/"):
                done = []
            parts = list(PurePosixPath(target).parts[1 if target.startswith("/") else 0:]) \
                + parts
            continue
        done.append(part)
    final = root.joinpath(*done)
    if not final.exists():
        raise LabBuildError(f"{path} resolves to {final} in root {root}, which does not exist")
    return final


@dataclass(frozen=True)
class OvnInstall:
    """An OVN/OVS installation: ``root=None`` is the host's, else a Debian root dir."""

    name: str = HOST_OVN
    """The ``--ovn`` choice this install serves (``host``, ``25.03``...)."""
    root: Path | None = None

    def argv(self, program: str) -> list[str]:
        """The command that runs ``program`` of this installation (PrerequisiteError if
        it is not there)."""
        if self.root is None:
            found = shutil.which(program, path=os.environ.get("PATH", "") + ":" + SBIN_PATH)
            if found is None:
                raise PrerequisiteError(f"{program} not found; run scripts/install-debs")
            return [found]
        return [*self.loader(), str(self.binary(program))]

    def loader(self) -> list[str]:
        """The root's dynamic loader with the root's library path (roots only)."""
        assert self.root is not None
        libs = ":".join(str(self.root / d) for d in LIB_DIRS)
        return [str(resolve_in_root(self.root, "/" + LOADER)), "--library-path", libs]

    def binary(self, program: str) -> Path:
        """The real file of ``program`` inside the root (alternatives resolved)."""
        assert self.root is not None
        for d in BIN_DIRS:
            if (self.root / d / program).is_symlink() or (self.root / d / program).exists():
                return resolve_in_root(self.root, f"/{d}/{program}")
        raise PrerequisiteError(
            f"{program} is not in the OVN root {self.root}; remove the root to rebuild it"
        )

    def schema(self, which: str) -> str:
        """Path of the ``vswitch``/``nb``/``sb`` schema of this installation."""
        rel = SCHEMA_PATHS[which]
        return str(self.root / rel) if self.root is not None else "/" + rel

    def missing(self) -> list[str]:
        """Programs and schemas this installation lacks (empty: complete)."""
        absent: list[str] = []
        for program in PROGRAMS:
            try:
                self.argv(program)
            except (PrerequisiteError, LabBuildError):
                absent.append(program)
        absent += [self.schema(s) for s in SCHEMA_PATHS if not Path(self.schema(s)).exists()]
        return absent

    def versions(self, timeout: float = 10.0) -> dict[str, str]:
        """``program -> x.y.z`` as each binary reports it (``--version``), plus ``ovn`` and
        ``ovs`` (ovn-controller's and ovs-vswitchd's): what actually runs, never what the
        package name promises."""
        found: dict[str, str] = {}
        for program in VERSIONED:
            try:
                out = subprocess.run([*self.argv(program), "--version"], capture_output=True,
                                     text=True, timeout=timeout, check=False).stdout
            except (OSError, subprocess.TimeoutExpired, PrerequisiteError) as e:
                raise LabBuildError(f"{program} of OVN install {self.name} does not run: {e}") \
                    from e
            version = parse_version(out)
            if version is None:
                raise LabBuildError(f"{program} --version of OVN install {self.name} printed "
                                    f"no version: {out.strip()[:200]!r}")
            found[program] = version
        return {"ovn": found["ovn-controller"], "ovs": found["ovs-vswitchd"], **found}

    def describe(self) -> str:
        return "host packages" if self.root is None else f"Debian root {self.root}"
