"""The readiness seam shared by ``claim`` and the stricter checks that follow it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cutover.chassis.liveness import Watched
from cutover.site import ChassisEndpoint, VmSpec


@dataclass(frozen=True)
class Evidence:
    """What a readiness check saw, and when (wall ms)."""

    check: str
    seen_ms: float
    detail: str
    committed_ms: float | None = None
    """When the row change behind the evidence was written, if the row says so (wall ms);
    ``seen_ms - committed_ms`` is the detection latency. None when the row has no
    timestamp (e.g. ``Port_Binding.additional_chassis`` for ``claim``)."""
    marks: tuple[tuple[str, float, str], ...] = ()
    """Intermediate (event, wall ms, detail) for the migration timeline, e.g. the
    ``nb_cfg`` bump of ``nb-cfg``."""


class ReadinessCheck(Protocol):
    name: str

    def arm(self, vm: VmSpec, src: ChassisEndpoint, dst: ChassisEndpoint) -> None:
        """Register the waits; call before the transaction that will make them true."""

    def wait(self, timeout_s: float) -> Evidence:
        """Block until ready (or raise WaitTimeout with the state seen)."""

    def disarm(self) -> None:
        """Drop the registered waits (idempotent; used on rollback)."""

    def vital(self) -> Sequence[Watched]:
        """After :meth:`arm`: the chassis whose ovn-controller must stay alive from now until
        the switchover for this readiness to mean anything (empty: none is watched)."""

    def interrupt(self, cause: BaseException) -> None:
        """Make a running (or the next) :meth:`wait` raise ``cause`` at once: a controller
        in :meth:`vital` died. Called from another thread."""
