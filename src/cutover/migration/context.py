"""Everything a migration step may touch, built once per migration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cutover import bounds
from cutover.chassis.base import Chassis
from cutover.evidence import Evidence
from cutover.guest.base import Hypervisor
from cutover.migration.liveness import Liveness
from cutover.migration.timeline import Timeline
from cutover.network.binding import BindingController
from cutover.ovsdb.connection import Watch
from cutover.ovsdb.sb import SbClient
from cutover.readiness.base import ReadinessCheck
from cutover.site import ChassisEndpoint, Site, VmSpec

ACTIVATIONS = ("rarp", "none")


@dataclass(frozen=True)
class MigrationOptions:
    strategy: str = "claim"
    activation: str = "rarp"
    """OVN ``activation-strategy`` for the destination ("none": traffic cloned to both)."""
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
