"""Strategies as compositions of steps, and the readiness check each one waits for.

legacy  today's problem as the seed describes it: nothing waits; the destination TAP and
        port appear only at switchover and requested-chassis moves after it.
claim   OpenStack 2026.1: TAP pre-created, requested-chassis=src,dst with
        activation-strategy, wait for the SB claim (additional_chassis), then switch over.
nb-cfg  Neutron master: the claim steps, but after the claim bump NB_Global.nb_cfg and
        wait for Chassis_Private(dst).nb_cfg to catch up (readiness/nb_cfg.py).
port-ready  the claim steps, but wait until the destination's own flows for this port
        are on its br-int (ovn-installed + OpenFlow check; readiness/port_ready.py).
path-ready  port-ready AND every peer chassis (hosting ports that can send to the VM)
        outputs the VM's traffic to the destination tunnel (readiness/path_ready.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cutover.errors import InvalidMigration
from cutover.migration.steps import (
    Activate,
    ArmReadiness,
    CleanupSource,
    ConfirmReady,
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
from cutover.readiness.nb_cfg import NbCfgReadiness
from cutover.readiness.path_ready import PathReadyReadiness
from cutover.readiness.port_ready import PortReadyReadiness
from cutover.site import Site

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
    if strategy in ("claim", "nb-cfg", "port-ready", "path-ready"):
        return [
            PlugDestination(),
            ArmReadiness(),
            StartIncoming(),
            PrepareNetwork(),
            WaitReady(),
            CopyMemory(),
            PauseSource(),
            ConfirmReady(),
            Switchover(),
            Activate(),
            CleanupSource(),
        ]
    raise InvalidMigration(f"unknown strategy {strategy!r}")


def readiness_for(strategy: str, clients: SiteClients, site: Site) -> ReadinessCheck | None:
    if strategy == "legacy":
        return None
    if strategy == "claim":
        return ClaimReadiness(clients.sb)
    if strategy == "nb-cfg":
        return NbCfgReadiness(clients.nb, clients.sb)
    if strategy == "port-ready":
        return PortReadyReadiness(clients.sb, clients.vswitch)
    if strategy == "path-ready":
        return PathReadyReadiness(clients.sb, clients.vswitch, {c.name: c for c in site.chassis})
    raise InvalidMigration(f"unknown strategy {strategy!r}")
