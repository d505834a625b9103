"""The strategy registry: each strategy's steps, its readiness check, and what it needs.

legacy  today's problem as the seed describes it: nothing waits; the destination TAP and
        port appear only at switchover and requested-chassis moves after it.
claim   OpenStack 2026.1: TAP pre-created, requested-chassis=src,dst with
        activation-strategy, wait for the SB claim (additional_chassis), then switch over.
nb-cfg  Neutron master: the claim steps, but after the claim bump NB_Global.nb_cfg and
        wait for Chassis_Private(dst).nb_cfg to catch up (readiness/nb_cfg.py).
port-ready  the claim steps, but wait until the destination's own flows for this port
        are on its br-int and its ovn-controller is alive (readiness/port_ready.py).
path-ready  port-ready AND every peer chassis (hosting ports that can send to the VM)
        outputs the VM's traffic to the destination tunnel (readiness/path_ready.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cutover.errors import InvalidMigration
from cutover.migration.clients import SiteClients
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
    StillAlive,
    Switchover,
    WaitReady,
)
from cutover.readiness.base import ReadinessCheck
from cutover.readiness.claim import ClaimReadiness
from cutover.readiness.nb_cfg import NbCfgReadiness
from cutover.readiness.path_ready import PathReadyReadiness
from cutover.readiness.port_ready import PortReadyReadiness


@dataclass(frozen=True)
class Strategy:
    name: str
    steps: Callable[[], list[Step]]
    readiness: Callable[[SiteClients], ReadinessCheck | None]
    reads_flows: bool = False
    """Reads OpenFlow tables on chassis: each needs an agent or a local unix: OVSDB."""


def _legacy_steps() -> list[Step]:
    return [StartIncoming(), CopyMemory(), PauseSource(), PlugDestination(), Switchover(),
            Activate(), CleanupSource()]  # fmt: skip


def _waiting_steps() -> list[Step]:
    return [PlugDestination(), ArmReadiness(), StartIncoming(), PrepareNetwork(), WaitReady(),
            CopyMemory(), ConfirmReady(), PauseSource(), StillAlive(), Switchover(),
            Activate(), CleanupSource()]  # fmt: skip


_REGISTRY = (
    Strategy("legacy", _legacy_steps, lambda c: None),
    Strategy("claim", _waiting_steps, lambda c: ClaimReadiness(c.sb)),
    Strategy("nb-cfg", _waiting_steps, lambda c: NbCfgReadiness(c.nb, c.sb)),
    Strategy("port-ready", _waiting_steps, lambda c: PortReadyReadiness(c.chassis),
             reads_flows=True),
    Strategy("path-ready", _waiting_steps, lambda c: PathReadyReadiness(c.sb, c.chassis),
             reads_flows=True),
)  # fmt: skip
STRATEGIES: dict[str, Strategy] = {s.name: s for s in _REGISTRY}
STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGIES)


def strategy(name: str) -> Strategy:
    """The registered strategy ``name``; InvalidMigration naming the known ones otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise InvalidMigration(
            f"unknown strategy {name!r}; choose one of {', '.join(STRATEGY_NAMES)}"
        ) from None


def build_steps(name: str) -> list[Step]:
    return strategy(name).steps()
