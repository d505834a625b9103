"""A deterministic ovn-controller stall: ``debug/pause`` now, ``debug/resume`` after a delay.

Under real load an ovn-controller can spend seconds recomputing before it installs a
migrating port's flows (lab-findings: 2-99 s). Building that load takes minutes and is
never exactly repeatable; pausing the controller through its unixctl socket freezes it for
a chosen time instead, so a migration strategy can be tested against "the destination (or a
peer) chassis is slow" in a few seconds. While paused, the controller reads nothing from the
SB and writes nothing to OVS: no claims, no flows, no ``ovn-installed``.
"""

from __future__ import annotations

import threading
import time
from typing import Literal, Protocol

from cutover.chassis import unixctl
from cutover.errors import CutoverError, InputError, LabError

StallRole = Literal["dst", "peer", "none"]
STALL_ROLES: tuple[StallRole, ...] = ("dst", "peer", "none")
MAX_STALL_MS = 600_000.0
"""Ten minutes: a longer stall is almost certainly a typo (seconds given as milliseconds?)."""


def parse_stall(spec: str) -> tuple[StallRole, float]:
    """``"dst:2000"`` -> ``("dst", 2000.0)``; ``"none"`` (or ``"none:0"``) -> ``("none", 0.0)``.

    ``dst`` stalls the migration's destination chassis, ``peer`` the chassis of the client
    that probes the VM (its flows towards the VM's new location are late too).
    """
    text = spec.strip().lower()
    role_s, sep, ms_s = text.partition(":")
    if role_s not in STALL_ROLES:
        raise InputError(
            f"stall {spec!r}: role must be one of {', '.join(STALL_ROLES)} "
            "(e.g. 'dst:2000' stalls the destination's ovn-controller for 2000 ms)"
        )
    role: StallRole = role_s
    if role == "none":
        if sep and ms_s.strip() not in ("", "0"):
            raise InputError(f"stall {spec!r}: 'none' takes no duration")
        return role, 0.0
    if not sep or not ms_s.strip():
        raise InputError(f"stall {spec!r}: give a duration in ms, e.g. '{role}:2000'")
    try:
        ms = float(ms_s)
    except ValueError as e:
        raise InputError(f"stall {spec!r}: {ms_s!r} is not a number of milliseconds") from e
    if not 0 < ms <= MAX_STALL_MS:
        raise InputError(
            f"stall {spec!r}: duration must be > 0 and <= {MAX_STALL_MS:.0f} ms, got {ms:g}"
        )
    return role, ms


def _now_ms() -> float:
    return time.time() * 1000.0


class Pausable(Protocol):
    """An ovn-controller that can be frozen: a :class:`~cutover.chassis.base.Chassis` (the
    seam: locally or through its agent) or :class:`UnixctlController`."""

    name: str

    def pause_controller(self, resume_after_ms: float | None = None) -> None: ...

    def resume_controller(self) -> None: ...


class UnixctlController:
    """The ovn-controller behind a unixctl socket path (lab tests that have only a path).
    Nothing but this process' timer resumes it: tests only."""

    def __init__(self, ctl_path: str) -> None:
        self.name = ctl_path

    def pause_controller(self, resume_after_ms: float | None = None) -> None:
        unixctl.call(self.name, "debug/pause")

    def resume_controller(self) -> None:
        unixctl.call(self.name, "debug/resume")


class ControllerStall:
    """Pause one ovn-controller for ``duration_ms``; always call :meth:`stop` in a finally.

    The chassis is asked to resume by itself at the same deadline (an agent keeps it even
    if this process dies); this object's own timer marks the end of the window and
    resumes it too (idempotent).

    ``started_ms``/``ended_ms`` are wall-clock times (ms since the epoch): right after the
    pause command returned (paused by then) and right before the resume command was sent
    (it cannot run again earlier), so the window lies inside the real stall.
    """

    def __init__(self, target: Pausable | str, duration_ms: float) -> None:
        """``target``: the controller's chassis, or its unixctl socket path."""
        if duration_ms <= 0:
            raise InputError(f"stall duration must be > 0 ms, got {duration_ms:g}")
        self.target = UnixctlController(target) if isinstance(target, str) else target
        self.ctl_path = self.target.name
        self.duration_ms = duration_ms
        self.started_ms: float | None = None
        self.ended_ms: float | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._paused = False
        self.resume_error: str | None = None
        """Set if the timed resume failed (stop() retries it and raises)."""

    @property
    def paused(self) -> bool:
        return self._paused

    def _appctl(self, command: str) -> None:
        try:
            if command == "debug/pause":  # the chassis (its agent) owns the deadline too
                self.target.pause_controller(self.duration_ms)
            else:
                self.target.resume_controller()
        except LabError:
            raise
        except CutoverError as e:
            raise LabError(str(e)) from e

    def start(self) -> None:
        """Pause now and arm the resume timer. Raises LabError if the pause failed."""
        with self._lock:
            if self._paused or self.started_ms is not None:
                raise LabError(f"stall of {self.ctl_path} was already started")
            try:
                self._appctl("debug/pause")
            except LabError as e:
                raise LabError(f"could not pause ovn-controller at {self.ctl_path}: {e}") from e
            self._paused = True
            self.started_ms = _now_ms()
            self._timer = threading.Timer(self.duration_ms / 1000.0, self._timed_resume)
            self._timer.daemon = True
            self._timer.start()

    def _timed_resume(self) -> None:
        try:
            self._resume()
        except LabError as e:
            self.resume_error = str(e)

    def _resume(self) -> None:
        with self._lock:
            if not self._paused:
                return
            sent = _now_ms()  # the controller may run again before the reply reaches us
            self._appctl("debug/resume")
            self._paused = False
            self.ended_ms = sent

    def stop(self) -> None:
        """Resume now if still paused; idempotent and safe before/without start()."""
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._resume()
        except LabError as e:
            raise LabError(
                f"could not resume ovn-controller at {self.ctl_path}: {e}; resume it by hand: "
                f"ovn-appctl -t <its unixctl socket> debug/resume"
            ) from e

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the timed resume has run; True if the controller runs again."""
        if self._timer is not None:
            self._timer.join(timeout)
        return not self._paused

    def join(self, timeout: float | None = None) -> None:
        """Block until the timed resume has run (no-op if never started)."""
        self.wait(timeout)

    def __enter__(self) -> ControllerStall:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
