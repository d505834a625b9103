"""The readiness seam shared by ``claim`` and the stricter checks that follow it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cutover.site import ChassisEndpoint, VmSpec


@dataclass(frozen=True)
class Evidence:
    """What a readiness check saw, and when (wall ms)."""

    check: str
    seen_ms: float
    detail: str


class ReadinessCheck(Protocol):
    name: str

    def arm(self, vm: VmSpec, src: ChassisEndpoint, dst: ChassisEndpoint) -> None:
        """Register the waits; call before the transaction that will make them true."""

    def wait(self, timeout_s: float) -> Evidence:
        """Block until ready (or raise WaitTimeout with the state seen)."""

    def disarm(self) -> None:
        """Drop the registered waits (idempotent; used on rollback)."""
