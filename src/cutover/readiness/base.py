"""The readiness seam shared by ``claim`` and the stricter checks that follow it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cutover.evidence import Evidence
from cutover.site import ChassisEndpoint, VmSpec


class ReadinessCheck(Protocol):
    name: str

    def arm(self, vm: VmSpec, src: ChassisEndpoint, dst: ChassisEndpoint) -> None:
        """Register the waits; call before the transaction that will make them true."""

    def wait(self, timeout_s: float) -> Evidence:
        """Block until ready (or raise WaitTimeout with the state seen)."""

    def disarm(self) -> None:
        """Drop the registered waits (idempotent; used on rollback)."""

    def vital(self) -> Sequence[tuple[str, str]]:
        """After :meth:`arm`: ``(chassis, role)`` of every chassis whose ovn-controller must
        stay alive from now until the switchover for this readiness to mean anything (role:
        ``destination`` or ``peer``; empty: none is watched)."""

    def interrupt(self, cause: BaseException) -> None:
        """Make a running (or the next) :meth:`wait` raise ``cause`` at once: a controller
        in :meth:`vital` died. Called from another thread."""
