"""Small privileged helpers with plain typed arguments (the role os-vif's privsep functions play).

Every system change the lab makes goes through here, so there is one place that runs
commands (translating failures into :class:`LabBuildError` with the command and its stderr),
one place that starts daemons, and one place that kills processes - and it only kills a pid
whose command line still names the lab directory, so a recycled pid is never hit.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from cutover.children import die_with
from cutover.errors import LabBuildError, LabError, PrerequisiteError
from cutover.lab.ovn_install import OvnInstall

T = TypeVar("T")

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""Daemons live in /usr/sbin on Debian; a venv's PATH may lack it."""

REQUIRED_TOOLS: dict[str, str] = {
    "ovsdb-server": "openvswitch-switch",
    "ovs-vswitchd": "openvswitch-switch",
    "ovs-vsctl": "openvswitch-switch",
    "ovsdb-tool": "openvswitch-switch",
    "ovn-northd": "ovn-central",
    "ovn-nbctl": "ovn-central",
    "ovn-sbctl": "ovn-central",
    "ovn-controller": "ovn-host",
    "ovn-appctl": "ovn-host",
    "ovs-pki": "openvswitch-common",  # the SSL lab's PKI (lab up --ssl)
    "ip": "iproute2",
    "sysctl": "procps",
}
"""Binary -> Debian package that provides it (or pulls it in)."""

SCHEMAS: dict[str, tuple[str, str]] = {
    "vswitch": ("/usr/share/openvswitch/vswitch.ovsschema", "openvswitch-switch"),
    "nb": ("/usr/share/ovn/ovn-nb.ovsschema", "ovn-central"),
    "sb": ("/usr/share/ovn/ovn-sb.ovsschema", "ovn-central"),
}


def _search_path() -> str:
    return os.environ.get("PATH", "") + ":" + SBIN_PATH


def tool(name: str) -> str:
    """Absolute path of a required binary (PrerequisiteError naming the package if absent)."""
    found = shutil.which(name, path=_search_path())
    if found is None:
        pkg = REQUIRED_TOOLS.get(name, "the package providing it")
        raise PrerequisiteError(f"{name} not found; install it: apt-get install {pkg}")
    return found


@functools.cache
def supports_option(argv: tuple[str, ...], option: str) -> bool:
    """Whether ``argv --help`` lists ``option`` (options differ between OVN releases);
    ``argv`` is the command of one installation's binary (:meth:`OvnInstall.argv`)."""
    out = subprocess.run([*argv, "--help"], capture_output=True, text=True,
                         timeout=10, check=False)
    return option in out.stdout


def check_prerequisites(install: OvnInstall | None = None) -> None:
    """Root, the binaries, the schemas and /dev/net/tun: fail before building anything.

    With a root ``install`` its programs and schemas are checked instead of the host's
    OVN/OVS packages (``ip`` and ``sysctl`` always come from the host).
    """
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "the lab creates network namespaces and daemons: run it as root"
        )
    if install is not None and install.root is not None:
        absent_in_root = install.missing()
        if absent_in_root:
            raise PrerequisiteError(
                f"the OVN root {install.root} lacks {', '.join(absent_in_root)}; remove it "
                "so that the next 'cutover lab up' rebuilds it"
            )
        host_tools: tuple[str, ...] = ("ip", "sysctl")
    else:
        host_tools = tuple(REQUIRED_TOOLS)
    absent = [name for name in host_tools if shutil.which(name, path=_search_path()) is None]
    if install is None or install.root is None:
        absent += [path for path, _ in SCHEMAS.values() if not Path(path).exists()]
    if absent:
        pkgs = {**REQUIRED_TOOLS, **dict(SCHEMAS.values())}
        pkg_names = " ".join(sorted({pkgs[a] for a in absent}))
        raise PrerequisiteError(
            f"missing {', '.join(absent)}; install them: apt-get install {pkg_names}"
        )
    if not Path("/dev/net/tun").exists():
        raise PrerequisiteError(
            "/dev/net/tun is missing (needed for TAP devices): load the tun module or "
            "create it with 'mknod /dev/net/tun c 10 200'"
        )


def run(
    argv: Sequence[str],
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    check: bool = True,
    cwd: Path | None = None,
) -> str:
    """Run a command (inside ``netns`` if given, in ``cwd``) and return its stdout.

    Failures raise LabBuildError quoting the command and its stderr, so a build error says
    exactly which step of which chassis broke. ``check=False`` returns stdout regardless.
    """
    full = [tool("ip"), "netns", "exec", netns, *argv] if netns else list(argv)
    full_env = {**os.environ, "PATH": _search_path(), **(env or {})}
    cmd = " ".join(full)
    try:
        proc = subprocess.run(
            full, env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
            preexec_fn=die_with(os.getpid()), cwd=cwd,  # a killed CLI leaves no tool behind
        )
    except subprocess.TimeoutExpired as e:
        raise LabBuildError(f"`{cmd}` did not finish within {timeout:.0f} s") from e
    except OSError as e:
        raise LabBuildError(f"`{cmd}` could not start: {e}") from e
    if check and proc.returncode != 0:
        raise LabBuildError(
            f"`{cmd}` failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc.stdout


# -- namespaces ------------------------------------------------------------------------------


def list_netns(prefix: str) -> list[str]:
    """Named namespaces ``prefix`` or ``prefix-*`` (never another lab's ``prefix2-*``)."""
    out = run([tool("ip"), "netns", "list"])
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if n == prefix or n.startswith(prefix + "-"))


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def netns_add(name: str) -> None:
    """Create an empty named namespace; the caller registers its teardown, then sets it up."""
    run([tool("ip"), "netns", "add", name])


def netns_setup(name: str) -> None:
    """Loopback up and IPv6 disabled for all present and future devices of the namespace."""
    run([tool("ip"), "-n", name, "link", "set", "lo", "up"])
    run(
        [
            tool("sysctl"), "-q", "-e", "-w",
            "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
        ],
        netns=name,
    )


def enter_netns(name: str) -> None:
    """Move this (single-threaded) process into namespace ``name`` for good: threads and
    sockets it makes later live there. LabError if threads already run (they would stay
    behind) or the namespace does not exist."""
    if threading.active_count() != 1:
        raise LabError(f"cannot enter netns {name}: {threading.active_count()} threads run")
    _setns(name)


def in_netns(name: str | None, fn: Callable[[], T]) -> T:
    """``fn()`` in a thread of its own that first enters namespace ``name`` (None: here):
    the sockets ``fn`` opens live there, the rest of the process stays where it is
    (a namespace is a per-thread attribute). Its exception is raised here."""
    if name is None:
        return fn()
    result: list[T] = []
    error: list[BaseException] = []

    def run_there() -> None:
        try:
            _setns(name)
            result.append(fn())
        except BaseException as e:  # handed to the caller
            error.append(e)

    thread = threading.Thread(target=run_there, name=f"netns-{name}")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _setns(name: str) -> None:
    """The calling thread enters network namespace ``name``."""
    try:
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    except OSError as e:
        raise LabError(f"cannot enter netns {name}: {e.strerror}") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise LabError(f"cannot enter netns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


_CLONE_NEWNET = 0x40000000


def netns_pids(name: str) -> list[int]:
    """Processes still running inside a namespace (so down can report, not kill, strangers).

    Zombies do not count: they run nothing and hold nothing, and on a machine whose init
    does not reap orphans (this sandbox's) every daemon the lab stopped stays one."""
    out = run([tool("ip"), "netns", "pids", name], check=False)
    return [int(p) for p in out.split() if p.isdigit() and cmdline(int(p)) is not None]


def netns_del(name: str) -> None:
    """Delete a namespace; its veths, bridges and TAPs go with it. Gone already is fine."""
    if netns_exists(name):
        run([tool("ip"), "netns", "del", name])


# -- processes -------------------------------------------------------------------------------


def cmdline(pid: int) -> str | None:
    """The process' command line (NULs as spaces), None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    if state in ("Z", "X") or not raw:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def is_ours(pid: int, marker: str) -> bool:
    """Alive and its command line still names ``marker`` (our lab dir): safe to signal."""
    line = cmdline(pid)
    return line is not None and marker in line


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, PermissionError):
        return None
    return int(text) if text.isdigit() else None


def spawn_daemon(
    argv: Sequence[str],
    netns: str | None,
    pidfile: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> int:
    """Start an OVS/OVN daemon with ``--detach`` and return its pid (read from ``pidfile``).

    ``--detach`` makes the parent return only once the daemon is initialised (listening,
    pidfile written), so the caller can use it right away without sleeping.
    """
    pidfile.unlink(missing_ok=True)
    run([*argv, "--detach", "--no-chdir", "-vconsole:off", f"--pidfile={pidfile}"],
        netns=netns, env=env, timeout=timeout)
    pid = read_pidfile(pidfile)
    if pid is None:
        raise LabBuildError(f"{argv[0]} detached but wrote no pid to {pidfile}")
    return pid


def kill_pid(pid: int, marker: str, timeout: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; only if the cmdline still contains ``marker``.

    Returns True when the process is gone (a recycled pid that no longer names the marker
    is left alone and counts as gone), False if it survived SIGKILL.
    """
    return not kill_pids([(pid, marker)], timeout)


def kill_pids(procs: Sequence[tuple[int, str]], timeout: float = 5.0) -> list[int]:
    """Like :func:`kill_pid` for several processes at once: signal all, then wait for all.

    Returns the pids still alive after SIGKILL (normally none).
    """
    left = list(procs)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        left = [(p, m) for p, m in left if is_ours(p, m)]
        for pid, _ in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        for pid, marker in left:
            wait_gone([pid], marker, max(0.0, deadline - time.monotonic()))
    return [p for p, m in left if is_ours(p, m)]


def wait_gone(pids: Sequence[int], marker: str, timeout: float) -> bool:
    """Poll until none of ``pids`` is our live process; True if they all went in time."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while any(is_ours(p, marker) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def wait_for(
    what: str, check: Callable[[], object], timeout: float, interval: float = 0.02
) -> None:
    """Poll ``check()`` (a zero-argument callable returning truthy) until it holds.

    Used where no event-driven wait exists (e.g. tunnels appearing in a local OVSDB);
    raises LabBuildError naming ``what`` on timeout instead of sleeping blindly.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() >= deadline:
            raise LabBuildError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def daemon_env(directory: Path) -> dict[str, str]:
    """Point every OVS/OVN default path (run, db, log dirs) at ``directory``, never /var/run.

    Each chassis needs its own: bridge management sockets (``br-int.mgmt``) live in the
    OVS run dir, and three chassis sharing one would clash.
    """
    d = str(directory)
    return {k: d for k in ("OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR",
                           "OVN_RUNDIR", "OVN_DBDIR", "OVN_LOGDIR")}
