"""Fault injection for benchmark runs: which ovn-controller to stall, and when.

``--stall dst:MS`` freezes the destination's ovn-controller for MS ms from the moment the
destination port is plugged (``plug.start``): a deterministic stand-in for a busy host.
``peer`` stalls the probe client's chassis instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cutover.chassis.base import Chassis
from cutover.errors import InputError
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
