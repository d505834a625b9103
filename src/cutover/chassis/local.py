"""The chassis seam implemented in this process: what a per-node agent runs on its node.

Reaches the chassis through the paths its :class:`~cutover.site.ChassisEndpoint` names:
the local Open_vSwitch database (``ovs_remote``, ``unix:`` only: ``ovs-ofctl`` must find
``br-int.mgmt`` beside it), the network namespace of its devices, and ovn-controller's
unixctl socket. The orchestrator uses it directly only when every chassis is reachable
from where it runs (the lab on one machine); otherwise the chassis' agent runs it.

Plugging is os-vif's OVS plugin with ``create_tap`` (os-vif >= 4.3) in the agent
(:mod:`cutover.agent.osvif`), and the same steps written out (:class:`TapPortPlugger`)
where os-vif is not loaded: a persistent TAP with the VM's MAC and MTU, IPv6 off, and a
system-type OVS port on the integration bridge with ``iface-id``, ``iface-status``,
``attached-mac`` and ``vm-uuid``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from cutover.chassis import privileged, unixctl
from cutover.chassis.base import DeathCallback, PathTarget, Vif
from cutover.chassis.flows import BridgeFlows
from cutover.chassis.liveness import ControllerLiveness, Watched, probe
from cutover.chassis.path_watch import LocalPathWatch
from cutover.chassis.port_watch import INSTALLED_GRACE_MS, LocalPortWatch
from cutover.errors import (
    ControllerDown,
    CutoverError,
    InvalidMigration,
    PlugError,
)
from cutover.ovsdb.sb import SbClient
from cutover.ovsdb.vswitch import VswitchClient
from cutover.site import ChassisEndpoint

DEFAULT_RUNDIR = "/var/run/openvswitch"


def rundir_for(chassis: ChassisEndpoint) -> str:
    """The chassis' OVS_RUNDIR: where ``br-int.mgmt`` lives. OVS keeps ``db.sock`` there,
    so it is the directory of a ``unix:`` remote; otherwise ``$OVS_RUNDIR`` or the OVS
    default."""
    if chassis.ovs_remote.startswith("unix:"):
        return os.path.dirname(chassis.ovs_remote[len("unix:"):]) or DEFAULT_RUNDIR
    return os.environ.get("OVS_RUNDIR", DEFAULT_RUNDIR)


class VifPlugger(Protocol):
    """How VIFs are plugged: os-vif in the agent, :class:`TapPortPlugger` elsewhere."""

    def plug(self, vif: Vif) -> None: ...

    def unplug(self, vif: Vif) -> None: ...


class TapPortPlugger:
    """os-vif's ``create_tap`` steps written out, for where os-vif is not loaded (the
    orchestrator reaching a chassis without an agent; os-vif would bring eventlet and
    oslo.* into it). TAP first, then the port: vswitchd finds the device at once (os-vif
    does the reverse and logs "No such device" once)."""

    def __init__(self, endpoint: ChassisEndpoint, vswitch: Callable[[], VswitchClient]) -> None:
        self._endpoint = endpoint
        self._vswitch = vswitch

    def plug(self, vif: Vif) -> None:
        netns = self._endpoint.netns
        if not privileged.tap_exists(netns, vif.tap):
            privileged.create_tap(netns, vif.tap, vif.mac, vif.mtu)
        try:
            self._vswitch().add_vif_port(self._endpoint.integration_bridge, vif.tap, vif.lsp,
                                         vif.mac, vif.vm_uuid)  # fmt: skip
        except CutoverError as e:
            privileged.delete_tap(netns, vif.tap)
            raise PlugError(f"{vif.tap} on {self._endpoint.name}: {e}") from e

    def unplug(self, vif: Vif) -> None:
        self._vswitch().del_port(vif.tap)
        privileged.delete_tap(self._endpoint.netns, vif.tap)


class LocalChassis:
    """:class:`~cutover.chassis.base.Chassis` for a chassis reachable from this process."""

    def __init__(self, endpoint: ChassisEndpoint, sb: SbClient | None = None,
                 grace_ms: float = INSTALLED_GRACE_MS, plugger: VifPlugger | None = None
                 ) -> None:  # fmt: skip
        """``sb``: needed only to watch a port's readiness (the claim, the port's key).
        ``plugger``: default :class:`TapPortPlugger`; the agent passes os-vif's."""
        self.name = endpoint.name
        self.endpoint = endpoint
        self.grace_ms = grace_ms
        self._sb = sb
        self._vswitch: VswitchClient | None = None
        self._bridge = BridgeFlows(rundir_for(endpoint), endpoint.integration_bridge,
                                   endpoint.ofctl)
        self._plugger = plugger or TapPortPlugger(endpoint, lambda: self.vswitch)

    @property
    def vswitch(self) -> VswitchClient:
        """The chassis' Open_vSwitch DB, connected on first use."""
        if self._vswitch is None:
            self._vswitch = VswitchClient(self.name, self.endpoint.ovs_remote)
        return self._vswitch

    # -- VIFs ------------------------------------------------------------------------------

    def plug(self, vif: Vif) -> None:
        self._plugger.plug(vif)

    def unplug(self, vif: Vif) -> None:
        self._plugger.unplug(vif)

    def is_plugged(self, vif: Vif) -> bool:
        return (self.vswitch.interface(vif.tap) is not None
                or privileged.tap_exists(self.endpoint.netns, vif.tap))  # fmt: skip

    # -- readiness ---------------------------------------------------------------------------

    def _flows_reachable(self) -> None:
        if not self.endpoint.ovs_remote.startswith("unix:"):
            raise InvalidMigration(
                f"chassis {self.name} is reached over {self.endpoint.ovs_remote!r}, not a "
                "local unix: socket: ovs-ofctl cannot reach its br-int from here; give it an "
                "agent endpoint in the site"
            )

    def watch_port(self, vif: Vif, use_ovn_installed: bool = True) -> LocalPortWatch:
        self._flows_reachable()
        if self._sb is None:
            raise InvalidMigration(f"LocalChassis {self.name} has no SB connection to watch "
                                   f"{vif.lsp}'s claim with")  # fmt: skip
        if not vif.mac:
            raise InvalidMigration(f"port-ready of {vif.lsp} on {self.name} needs the VIF's MAC "
                                   "(its L2 lookup flow is part of the check)")  # fmt: skip
        return LocalPortWatch(self.name, self._sb, self.vswitch, self._bridge, vif,
                              self.grace_ms, use_ovn_installed)  # fmt: skip

    def watch_unblocked(self, vif: Vif) -> LocalPortWatch:
        self._flows_reachable()
        if self._sb is None:
            raise InvalidMigration(f"LocalChassis {self.name} has no SB connection to read "
                                   f"{vif.lsp}'s binding with")  # fmt: skip
        return LocalPortWatch(self.name, self._sb, self.vswitch, self._bridge, vif,
                              self.grace_ms, open_only=True)  # fmt: skip

    def watch_path(self, target: PathTarget) -> LocalPathWatch:
        self._flows_reachable()
        return LocalPathWatch(self.name, self.vswitch, self._bridge, target)

    # -- ovn-controller -----------------------------------------------------------------------

    def _ctl(self) -> str:
        return Watched(self.endpoint, "chassis").ctl

    def watch_controller(self, role: str, on_death: DeathCallback) -> ControllerLiveness:
        live = ControllerLiveness([Watched(self.endpoint, role)], on_death)
        live.start()
        return live

    def confirm_controller(self, role: str) -> None:
        ctl = self._ctl()
        try:
            probe(ctl)
        except OSError as e:
            raise ControllerDown(self.name, role, f"{ctl}: {e}") from e

    def pause_controller(self) -> None:
        unixctl.call(self._ctl(), "debug/pause")

    def resume_controller(self) -> None:
        unixctl.call(self._ctl(), "debug/resume")
