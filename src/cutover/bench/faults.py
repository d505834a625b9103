"""Fault injection for benchmark runs and tests: stalls and control-plane faults.

``--stall dst:MS`` freezes the destination's ovn-controller for MS ms from the moment the
destination port is plugged (``plug.start``): a deterministic stand-in for a busy host.
``peer`` stalls the probe client's chassis instead.

``--fault KIND[:MS]`` hits the control plane during one migration (:data:`FAULT_KINDS`:
each starts at a timeline event, and its number is a duration or a delay, checked before
anything is built): the SB server paused (SIGSTOP) or restarted, the SB RAFT leader
killed (clustered lab), ovn-northd paused, the destination's ovn-controller restarted
(``exit --restart``, then a new one) during the readiness wait or right after readiness;
the NB RAFT leader killed right before the NB transaction of the migration.
The migration must then complete or roll back within its timeouts, the VM must keep
answering, and the leftover scan must find nothing (:mod:`cutover.bench.leftovers`).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cutover.chassis.base import Chassis
from cutover.errors import InputError
from cutover.lab.manifest import ProcessEntry
from cutover.lab.stall import ControllerStall, parse_stall

STALL_TRIGGER = "plug.start"
STALL_TRIGGERS = {"plug": STALL_TRIGGER, "prepare": "incoming.started"}
"""``bench --stall-from``: the destination port's plug (default), or right before the
network preparation (requested-chassis=src,dst; the incoming guest has started): a stall
from ``prepare`` delays readiness by its whole length whatever the incoming guest's start
costs, which gate comparisons need. (Triggered after the preparation instead, the claim
slips through before the pause lands and the stall only delays what comes later.)"""


@dataclass
class StallPlan:
    spec: str
    role: str
    ms: float

    @classmethod
    def parse(cls, spec: str) -> StallPlan:
        role, ms = parse_stall(spec)
        return cls(spec=f"{role}:{ms:g}" if role != "none" else "none", role=role, ms=ms)

    def injector(self, chassis: Mapping[str, Chassis], dst: str, peer: str,
                 trigger: str = STALL_TRIGGER) -> StallInjector:
        """The injector for one migration to ``dst`` probed from ``peer``; the controller is
        paused through the chassis seam (its agent, or its unixctl socket locally)."""
        if self.role == "none":
            return StallInjector(None, trigger)
        name = dst if self.role == "dst" else peer
        if name not in chassis:
            raise InputError(f"no chassis {name} to stall; known: {', '.join(chassis)}")
        return StallInjector(ControllerStall(chassis[name], self.ms), trigger)


class StallInjector:
    """A timeline observer that starts the stall on its trigger event, once."""

    def __init__(self, stall: ControllerStall | None, trigger: str) -> None:
        self._stall = stall
        self._trigger = trigger

    def __call__(self, event: str) -> None:
        if self._stall is not None and event == self._trigger and self._stall.started_ms is None:
            self._stall.start()

    @property
    def window_ms(self) -> tuple[float, float] | None:
        """(started, ended) wall ms, once the stall is over."""
        if self._stall is None or self._stall.started_ms is None:
            return None
        if self._stall.ended_ms is None:
            return None
        return (self._stall.started_ms, self._stall.ended_ms)

    def finish(self) -> None:
        """Resume the controller if still paused (always call, in a finally)."""
        if self._stall is not None:
            self._stall.stop()

    def wait_over(self) -> None:
        """Block until a started stall has run its course (it resumes by itself)."""
        if self._stall is not None and self._stall.started_ms is not None:
            self._stall.join()


def end_injections(injector: StallInjector, end_fault: Callable[[], None]) -> list[str]:
    """End a run's stall and fault, every one of them whatever the others do (a stall
    whose resume fails - its chassis' agent died - must not leave the SB paused by a
    fault): what failed, as ``what: Type: message`` lines."""
    failed = []
    for what, end in (("the stall's end", injector.wait_over),
                      ("the stall's resume", injector.finish),
                      ("the fault's end", end_fault)):  # fmt: skip
        try:
            end()
        except Exception as e:  # each is reported; the rest still runs
            failed.append(f"{what}: {type(e).__name__}: {e}")
    return failed


# -- control-plane faults (``--fault``) ------------------------------------------------------

MAX_FAULT_MS = 600_000.0
"""Ten minutes: longer is almost certainly seconds typed as milliseconds."""


@dataclass(frozen=True)
class FaultKind:
    name: str
    trigger: str
    """Timeline event the fault starts at."""
    param: str
    """What the number after ``:`` means."""
    default_ms: float
    min_ms: float
    """Smallest accepted value (0 allowed for delays, not for durations)."""
    clustered: bool = False
    """Needs ``lab up --clustered``."""


FAULT_KINDS: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("sb-pause", "ready.armed", "how long the SB server stays SIGSTOPped (ms)",
              2000.0, 1.0),
    FaultKind("sb-restart", "ready.armed", "how long the SB server stays down before it "
              "starts again (ms)", 500.0, 0.0),
    FaultKind("sb-leader-kill", "ready.armed", "how long the SIGKILLed SB leader stays down "
              "before it starts again and rejoins (ms)", 1000.0, 0.0, clustered=True),
    FaultKind("nb-leader-kill", "ready.armed", "how long the SIGKILLed NB leader stays down "
              "before it starts again and rejoins (ms)", 1000.0, 0.0, clustered=True),
    FaultKind("northd-pause", "ready.armed", "how long ovn-northd stays SIGSTOPped (ms)",
              2000.0, 1.0),
    FaultKind("dst-controller-restart-wait", "ready.wait", "delay after the readiness wait "
              "starts before the destination's ovn-controller is told to exit --restart (ms)",
              0.0, 0.0),
    FaultKind("dst-controller-restart-ready", "ready", "delay after readiness before the "
              "destination's ovn-controller is told to exit --restart (ms)", 0.0, 0.0),
)}  # fmt: skip


class FaultTarget(Protocol):
    """What a fault acts on: the lab's processes (:class:`cutover.lab.faults.LabFaults`)."""

    def sb_server(self) -> ProcessEntry: ...
    def sb_leader(self) -> ProcessEntry: ...
    def nb_leader(self) -> ProcessEntry: ...
    def northd(self) -> ProcessEntry: ...
    def signal(self, proc: ProcessEntry, sig: signal.Signals) -> None: ...
    def restart(self, proc: ProcessEntry, down_ms: float = 0.0, kill: bool = False) -> int: ...
    def restart_controller(self, chassis_name: str) -> tuple[float, float, int]: ...


@dataclass(frozen=True)
class FaultPlan:
    """A parsed ``--fault KIND[:MS]`` (``none``: no fault)."""

    kind: FaultKind | None
    ms: float = 0.0

    @property
    def spec(self) -> str:
        return "none" if self.kind is None else f"{self.kind.name}:{self.ms:g}"

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        text = spec.strip().lower()
        name, sep, ms_s = text.partition(":")
        if name == "none" and not ms_s.strip():
            return cls(None)
        kind = FAULT_KINDS.get(name)
        if kind is None:
            raise InputError(f"fault {spec!r}: choose one of none, {', '.join(FAULT_KINDS)} "
                             "(e.g. sb-pause:2000)")
        if not sep:
            return cls(kind, kind.default_ms)
        try:
            ms = float(ms_s)
        except ValueError:
            raise InputError(f"fault {spec!r}: {ms_s!r} is not a number of ms; the number "
                             f"is {kind.param}") from None
        if not (kind.min_ms <= ms <= MAX_FAULT_MS) or ms != ms:
            low = "> 0" if kind.min_ms > 0 else ">= 0"
            raise InputError(f"fault {spec!r}: {kind.param} must be {low} and <= "
                             f"{MAX_FAULT_MS:.0f}, got {ms_s}")
        return cls(kind, ms)

    def injector(self, target: FaultTarget | None, dst: str) -> FaultInjector:
        if self.kind is not None and target is None:
            raise InputError(f"fault {self.spec} needs a lab to act on (the bench injects "
                             "faults only into a lab it can reach)")
        return FaultInjector(self, target, dst)


class FaultInjector:
    """A timeline observer that starts the fault on its trigger event, once, in a thread
    (the migration goes on); :meth:`finish` waits for it to end and undoes what it left
    (a process still stopped is continued)."""

    def __init__(self, plan: FaultPlan, target: FaultTarget | None, dst: str) -> None:
        self.plan, self._target, self._dst = plan, target, dst
        self._thread: threading.Thread | None = None
        self._stopped: ProcessEntry | None = None
        self._lock = threading.Lock()
        self.events: list[tuple[float, str, str]] = []
        """(wall ms, event, detail): ``fault.start``, ``fault.end`` and the steps between."""
        self.error: str | None = None

    def _mark(self, event: str, detail: str = "", at_ms: float | None = None) -> None:
        self.events.append((time.time() * 1000.0 if at_ms is None else at_ms, event, detail))

    def __call__(self, event: str) -> None:
        kind = self.plan.kind
        if kind is None or event != kind.trigger or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"fault-{kind.name}",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _run(self) -> None:
        kind, ms, target = self.plan.kind, self.plan.ms, self._target
        assert kind is not None and target is not None
        try:
            if kind.name in ("sb-pause", "northd-pause"):
                proc = target.sb_server() if kind.name == "sb-pause" else target.northd()
                with self._lock:
                    target.signal(proc, signal.SIGSTOP)
                    self._stopped = proc
                self._mark("fault.start", f"{kind.name}: SIGSTOP {proc.describe()}")
                time.sleep(ms / 1000.0)
                self._continue()
            elif kind.name in ("sb-restart", "sb-leader-kill", "nb-leader-kill"):
                kill = kind.name != "sb-restart"
                proc = (target.nb_leader() if kind.name == "nb-leader-kill"
                        else target.sb_leader() if kill else target.sb_server())
                self._mark("fault.start", f"{kind.name}: {'SIGKILL' if kill else 'SIGTERM'} "
                           f"{proc.describe()}, down {ms:g} ms")
                pid = target.restart(proc, ms, kill=kill)
                self._mark("fault.end", f"{proc.name} started again (pid {pid})")
            else:
                if ms > 0:
                    time.sleep(ms / 1000.0)
                asked, gone, pid = target.restart_controller(self._dst)
                self._mark("fault.start", f"{kind.name}: exit --restart asked of "
                           f"{self._dst}'s ovn-controller", at_ms=asked)
                self._mark("fault.old-exited", f"old ovn-controller of {self._dst} gone "
                           f"after {gone - asked:.0f} ms", at_ms=gone)
                self._mark("fault.end", f"new ovn-controller of {self._dst} (pid {pid})")
        except Exception as e:  # recorded: the run is marked, the bench goes on
            self.error = f"fault {self.plan.spec} failed: {type(e).__name__}: {e}"

    def _continue(self) -> None:
        with self._lock:
            proc, self._stopped = self._stopped, None
            if proc is not None and self._target is not None:
                self._target.signal(proc, signal.SIGCONT)
                self._mark("fault.end", f"SIGCONT {proc.describe()}")

    @property
    def started(self) -> bool:
        return self._thread is not None

    def finish(self, timeout_s: float | None = None) -> None:
        """Wait for the fault to run its course (at most ``timeout_s``; default its own
        duration + 60 s), then continue anything still stopped; safe to call when it
        never started."""
        if self._thread is not None:
            self._thread.join(self.plan.ms / 1000.0 + 60.0 if timeout_s is None else timeout_s)
            if self._thread.is_alive():
                self.error = self.error or (f"fault {self.plan.spec} still running after "
                                            f"{timeout_s:g} s")
        try:
            self._continue()
        except Exception as e:
            self.error = self.error or f"could not undo fault {self.plan.spec}: {e}"
