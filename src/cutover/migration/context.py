"""Everything a migration step may touch, built once per migration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cutover import bounds
from cutover.chassis.base import Chassis
from cutover.errors import InvalidMigration
from cutover.evidence import Evidence
from cutover.guest.base import Hypervisor
from cutover.migration.liveness import Liveness
from cutover.migration.timeline import Timeline
from cutover.network.binding import BindingController
from cutover.ovsdb.connection import Watch
from cutover.ovsdb.sb import SbClient
from cutover.readiness.base import ReadinessCheck
from cutover.site import ChassisEndpoint, Site, VmSpec

if TYPE_CHECKING:
    from cutover.migration.tap_gate import TapGate

ACTIVATIONS = ("rarp", "none", "pre", "pre-gated")
"""OVN ``activation-strategy`` while both chassis hold the port: ``rarp`` (the VM's RARP
unblocks the destination after the switchover), ``none`` (traffic cloned to both), ``pre``
(``rarp`` while preparing, then cutover activates the destination itself before the
switchover: :mod:`cutover.migration.preactivation`), ``pre-gated`` (``pre``, with the
destination TAP's gate closed from the pre-activation until the source stops:
:mod:`cutover.migration.tap_gate`)."""
PRE_ACTIVATIONS = ("pre", "pre-gated")
"""The activations in which cutover activates the destination itself (OVN keeps rarp)."""
GATES = ("before-copy", "before-switchover", "converge-when-ready")
"""Where the readiness wait sits in the migration (:mod:`cutover.migration.gates`)."""


@dataclass(frozen=True)
class MigrationOptions:
    strategy: str = "claim"
    activation: str = "rarp"
    """OVN ``activation-strategy`` for the destination ("none": traffic cloned to both;
    "pre": rarp, activated by cutover before the switchover; "pre-gated": "pre" with the
    destination TAP gated until the source stops)."""
    gate: str = "before-copy"
    """Where readiness gates the migration: before the memory copy starts, before the
    switchover (copy overlapped), or before QEMU may converge (copy overlapped, source
    kept running): see :mod:`cutover.migration.gates`."""
    copy_ms: float = 500.0
    """Memory-copy phase (the emulated guest keeps answering on the source meanwhile)."""
    pause_ms: float = 30.0
    """Stop-and-copy window between pausing the source and resuming the destination."""
    ready_timeout_s: float = 30.0
    activation_timeout_s: float = 30.0
    """After the switchover: how long the destination may take to become the only chassis."""

    def __post_init__(self) -> None:
        """Refuse out-of-range values (InputError) before any migration step runs."""
        bounds.check(bounds.COPY_MS, self.copy_ms)
        bounds.check(bounds.PAUSE_MS, self.pause_ms)
        bounds.check(bounds.READY_TIMEOUT_S, self.ready_timeout_s)
        bounds.check(bounds.ACTIVATION_TIMEOUT_S, self.activation_timeout_s)
        if self.gate not in GATES:
            raise InvalidMigration(f"unknown gate {self.gate!r}; choose one of {', '.join(GATES)}")
        if self.activation not in ACTIVATIONS:
            raise InvalidMigration(f"unknown activation {self.activation!r}; choose one of "
                             f"{', '.join(ACTIVATIONS)}")


@dataclass
class MigrationContext:
    site: Site
    vm: VmSpec
    src: ChassisEndpoint
    dst: ChassisEndpoint
    options: MigrationOptions
    binding: BindingController
    sb: SbClient
    chassis: Mapping[str, Chassis]
    """Every chassis of the site, through the chassis seam (local or agent)."""
    hypervisor: Hypervisor
    readiness: ReadinessCheck | None
    timeline: Timeline
    ready_wait_ms: float = 0.0
    prepare_started_ms: float | None = None
    evidence: Evidence | None = None
    liveness: Liveness | None = None
    """Watches the ovn-controllers the readiness depends on (its ``vital()`` chassis) from
    the arming until the migration ends; None for strategies that watch none."""
    passive: list[tuple[str, Watch]] = field(default_factory=list)
    """Watches that only annotate the timeline (e.g. "activated"), collected at the end."""
    tap_gate: TapGate | None = None
    """The destination TAP's gate, once ``pre-gated`` closed it."""
