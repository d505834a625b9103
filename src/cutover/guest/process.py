"""Orchestrator-side handle on a guest or prober process, across CLI invocations.

A guest outlives the ``cutover`` command that started it (``lab up`` starts it, a
later ``migrate`` drives it), so everything needed to find it again lives in the
filesystem: the control socket, the pidfile, and a log file next to the socket. A
:class:`ControlledProcess` is therefore just those paths plus the module name; it can
spawn the process (optionally inside a network namespace via ``ip netns exec``,
which also remounts ``/sys`` so the TAP check sees the namespace's devices) or
attach to one that is already there.

Killing is careful: signals go only to the pid in the pidfile, and only while
``/proc/<pid>/cmdline`` still shows our module, so a recycled pid is never hit.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from cutover.errors import GuestError, WaitTimeout
from cutover.guest.control import exchange
from cutover.guest.runtime import read_pidfile


def runs_module(pid: int, module: str) -> bool:
    """True if ``pid`` is a live (non-zombie) ``python -m <module>`` process."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    target = module.encode()
    return any(a == b"-m" and b == target for a, b in itertools.pairwise(argv))


Liveness = Literal["running", "dead", "missing"]


def liveness(module: str, pidfile: Path) -> tuple[Liveness, int | None]:
    """Whether the process of ``pidfile`` runs, from the pidfile and /proc alone (no request,
    nothing changed): ``running``; ``dead`` - the pidfile is there but its process is gone
    (killed or crashed: a clean exit removes its own pidfile); ``missing`` - no pidfile."""
    pid = read_pidfile(pidfile)
    if pid is None:
        return "missing", None
    return ("running" if runs_module(pid, module) else "dead"), pid


def exit_note(pidfd: int) -> str:
    """How the process behind ``pidfd`` ended, if this process is its parent (``waitid`` with
    WNOWAIT: the status stays for whoever reaps it); otherwise say it is unknown.

    Call it only once the pidfd is readable (the process has exited): the kernel may signal
    the pidfd a moment before the zombie is waitable, so this waits for it (no WNOHANG) -
    that moment is microseconds, and a non-child fails at once with ECHILD.
    """
    try:
        info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:
        return "exit status unknown (not a child of this process)"
    except OSError as e:
        return f"exit status unknown ({e})"
    if info is None:
        return "exit status unknown"
    if info.si_code == os.CLD_EXITED:
        return f"exited with status {info.si_status}"
    name = signal.Signals(info.si_status).name
    return f"killed by {name}" + (" (core dumped)" if info.si_code == os.CLD_DUMPED else "")


def _exited(pidfd: int) -> bool:
    """The process of ``pidfd`` has exited (its pidfd is readable); does not block."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


class ExitWatch:
    """Waits for any of several processes to exit, on pidfds: woken by the kernel the moment
    one dies, so a wait of seconds ends at once instead of when its timeout runs out.

    A pid is checked to still run its module *after* its pidfd is open, so the fd can never
    refer to a recycled pid. A context manager (closes the fds).
    """

    def __init__(self) -> None:
        self._watched: dict[int, tuple[str, int]] = {}
        """pidfd -> (label, pid)."""
        self._gone: list[tuple[str, int, str]] = []
        """Already gone when added: (label, pid, how)."""

    def add(self, label: str, pid: int, module: str) -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._gone.append((label, pid, "already gone"))
            return
        if runs_module(pid, module):
            self._watched[fd] = (label, pid)
            return
        try:
            how = exit_note(fd) if _exited(fd) else f"pid {pid} no longer runs {module}"
            self._gone.append((label, pid, how))
        finally:
            os.close(fd)

    def wait(self, timeout_s: float) -> tuple[str, int, str] | None:
        """Block up to ``timeout_s``; ``(label, pid, exit note)`` of the first process that
        exited (or was already gone when added), or None if all still run."""
        if self._gone:
            return self._gone[0]
        poller = select.poll()
        for fd in self._watched:
            poller.register(fd, select.POLLIN)
        # one blocking call: a pidfd turns readable only when its process exits, and an
        # EINTR is retried by Python with the remaining timeout (PEP 475)
        ready = poller.poll(max(0, math.ceil(timeout_s * 1000)))
        if not ready:
            return None
        label, pid = self._watched[ready[0][0]]
        return label, pid, exit_note(ready[0][0])

    def close(self) -> None:
        for fd in self._watched:
            os.close(fd)
        self._watched.clear()
        self._gone.clear()

    def __enter__(self) -> ExitWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ControlledProcess:
    """A process serving the JSON-lines control protocol at ``control``."""

    def __init__(
        self,
        label: str,
        module: str,
        control: Path,
        pidfile: Path,
        quit_cmd: str = "stop",
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.label = label
        self.module = module
        self.control = control
        self.pidfile = pidfile
        self.quit_cmd = quit_cmd
        self._popen = popen

    @property
    def log_path(self) -> Path:
        return self.control.with_suffix(".log")

    @property
    def pid(self) -> int | None:
        pid = read_pidfile(self.pidfile)
        if pid is None and self._popen is not None:
            pid = self._popen.pid
        return pid

    def __repr__(self) -> str:
        return f"{self.label} (pid {self.pid}, control {self.control})"

    # --- lifecycle -----------------------------------------------------------------

    @classmethod
    def spawn(
        cls,
        label: str,
        module: str,
        args: Sequence[str],
        control: Path,
        pidfile: Path,
        netns: str | None = None,
        quit_cmd: str = "stop",
        ready_timeout_s: float = 10.0,
    ) -> ControlledProcess:
        """Start ``python -m module args`` (in ``netns``) and wait until it answers ``status``."""
        control.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            module,
            *args,
            "--control",
            str(control),
            "--pidfile",
            str(pidfile),
        ]
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        with open(control.with_suffix(".log"), "ab") as log:
            log.write(f"--- {time.strftime('%F %T')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            try:
                popen = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as e:
                raise GuestError(f"cannot start {label} ({cmd[0]}): {e}") from e
        proc = cls(label, module, control, pidfile, quit_cmd, popen)
        proc._wait_ready(ready_timeout_s)
        return proc

    @classmethod
    def find(
        cls,
        label: str,
        module: str,
        control: Path,
        pidfile: Path,
        quit_cmd: str = "stop",
        timeout_s: float = 2.0,
    ) -> ControlledProcess | None:
        """The process serving ``control``, or None if there is none (stale files are removed).

        Raises :class:`GuestError` if something is there but does not answer properly.
        """
        proc = cls(label, module, control, pidfile, quit_cmd)
        if control.exists():
            try:
                proc.request({"cmd": "status"}, timeout_s)
                return proc
            except GuestError as e:
                if not isinstance(e.__cause__, ConnectionRefusedError | FileNotFoundError):
                    raise
        pid = read_pidfile(pidfile)
        if pid is not None and runs_module(pid, module):
            raise GuestError(
                f"{label}: process {pid} runs {module} but does not serve {control}; "
                f"it may still be starting - retry, or kill {pid} by hand"
            )
        # The stale socket goes; a dead process's pidfile stays as the record of its death
        # (see liveness()) until the process is started again (spawn overwrites it) or
        # stopped (stop() removes it).
        proc._remove_files(None)
        return None

    @classmethod
    def connect(
        cls,
        label: str,
        module: str,
        control: Path,
        pidfile: Path,
        quit_cmd: str = "stop",
        timeout_s: float = 2.0,
    ) -> ControlledProcess:
        """Attach to a process started earlier (e.g. by another CLI invocation)."""
        proc = cls.find(label, module, control, pidfile, quit_cmd, timeout_s)
        if proc is None:
            raise GuestError(f"no {label} is running (nothing answers on {control}); start it")
        return proc

    def alive(self) -> bool:
        pid = self.pid
        return pid is not None and self._pid_alive(pid)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask it to exit; escalate to SIGTERM, then SIGKILL. Idempotent."""
        pid = self.pid  # fixed now: the process removes its pidfile before it is gone
        if pid is None or not self._pid_alive(pid):
            self._remove_files(pid)
            return
        with contextlib.suppress(GuestError):
            self.request({"cmd": self.quit_cmd}, timeout_s=min(2.0, timeout_s))
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self._pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if self._wait_dead(pid, timeout_s / 2 if sig is None else timeout_s / 4):
                self._remove_files(pid)
                return
        raise GuestError(f"{self!r} survived SIGKILL; check it with 'ps -p {pid}'")

    # --- requests ------------------------------------------------------------------

    def request(self, cmd: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
        """Send one command; raise :class:`GuestError` on no answer or ``ok: false``."""
        try:
            response = exchange(self.control, cmd, timeout_s)
        except (OSError, ValueError) as e:
            raise GuestError(
                f"{self!r} did not answer {cmd.get('cmd')!r}: {type(e).__name__}: {e}. "
                f"See {self.log_path}; if it is wedged, stop it and start it again"
            ) from e
        if response.get("ok") is not True:
            raise GuestError(f"{self!r} refused {cmd!r}: {response.get('error', response)}")
        return response

    # --- internals -----------------------------------------------------------------

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        seen = "not started"
        while True:
            assert self._popen is not None
            rc = self._popen.poll()
            if rc is not None:
                raise GuestError(
                    f"{self.label} exited with status {rc} before serving {self.control}; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            try:
                exchange(self.control, {"cmd": "status"}, max(0.05, deadline - time.monotonic()))
                return
            except (OSError, ValueError) as e:
                seen = f"{type(e).__name__}: {e}"
            if time.monotonic() >= deadline:
                with contextlib.suppress(GuestError):
                    self.stop(timeout_s=2.0)
                raise WaitTimeout(f"{self.label} to serve {self.control}", timeout_s, seen)
            time.sleep(0.01)

    def _pid_alive(self, pid: int) -> bool:
        if self._popen is not None and self._popen.pid == pid and self._popen.poll() is not None:
            return False  # our child and reaped (a zombie would still show in /proc)
        return runs_module(pid, self.module)

    def _wait_dead(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._pid_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def _remove_files(self, pid: int | None) -> None:
        """Remove what a dead process left behind (SIGKILL skips its own cleanup)."""
        if pid is not None and read_pidfile(self.pidfile) == pid:
            self.pidfile.unlink(missing_ok=True)
        if self.control.exists() and (pid is None or not runs_module(pid, self.module)):
            try:
                exchange(self.control, {"cmd": "status"}, 0.5)
            except (ConnectionRefusedError, FileNotFoundError):
                self.control.unlink(missing_ok=True)
            except (OSError, ValueError):
                pass

    def log_tail(self, max_bytes: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_bytes))
                return f.read().decode(errors="replace")
        except OSError:
            return "(no log)"
