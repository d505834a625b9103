"""Strategies as compositions of steps, and the readiness check each one waits for.

legacy  today's problem as the seed describes it: nothing waits; the destination TAP and
        port appear only at switchover and requested-chassis moves after it.
claim   OpenStack 2026.1: TAP pre-created, requested-chassis=src,dst with
        activation-strategy, wait for the SB claim (additional_chassis), then switch over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cutover.errors import InvalidMigration
from cutover.migration.steps import (
    Activate,
    CleanupSource,
    CopyMemory,
    PauseSource,
    PlugDestination,
    PrepareNetwork,
    StartIncoming,
    Step,
    Switchover,
    WaitReady,
)
from cutover.readiness.base import ReadinessCheck
from cutover.readiness.claim import ClaimReadiness

if TYPE_CHECKING:
    from cutover.migration.orchestrator import SiteClients


def build_steps(strategy: str) -> list[Step]:
    if strategy == "legacy":
        return [
            StartIncoming(),
            CopyMemory(),
            PauseSource(),
            PlugDestination(),
            Switchover(),
            Activate(),
            CleanupSource(),
        ]
    if strategy == "claim":
        return [
            PlugDestination(),
            StartIncoming(),
            PrepareNetwork(),
            WaitReady(),
            CopyMemory(),
            PauseSource(),
            Switchover(),
            Activate(),
            CleanupSource(),
        ]
    raise InvalidMigration(f"unknown strategy {strategy!r}")


def readiness_for(strategy: str, clients: SiteClients) -> ReadinessCheck | None:
    if strategy == "legacy":
        return None
    if strategy == "claim":
        return ClaimReadiness(clients.sb)
    raise InvalidMigration(f"unknown strategy {strategy!r}")
