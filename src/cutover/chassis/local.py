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

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from cutover.chassis import privileged, unixctl
from cutover.chassis.base import (
    GATE_OPEN_PORT_TIMEOUT_S,
    DeathCallback,
    PathTarget,
    TapGateState,
    Vif,
)
from cutover.chassis.flows import BridgeFlows
from cutover.chassis.liveness import ControllerLiveness, Watched, probe
from cutover.chassis.path_watch import LocalPathWatch
from cutover.chassis.port_verdict import INSTALLED_GRACE_MS
from cutover.chassis.port_watch import LocalPortWatch
from cutover.chassis.published import path_ready_key, port_ready_key
from cutover.errors import (
    ControllerDown,
    CutoverError,
    InvalidMigration,
    PlugError,
    WaitTimeout,
)
from cutover.ovsdb.connection import Watch as OvsdbWatch
from cutover.ovsdb.sb import SbClient
from cutover.ovsdb.vswitch import VswitchClient, interface_ofport
from cutover.site import ChassisEndpoint

DEFAULT_RUNDIR = "/var/run/openvswitch"
PLUG_OPEN_TIMEOUT_S = 120.0
"""How long the TAP fix-up waits for ovs-vswitchd to open a just-plugged port (ms
normally; > 10 s seen while it re-installed a restarted controller's flows under L2)."""


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
        self._pause_lock = threading.Lock()
        self._resume_timer: threading.Timer | None = None
        self.paused_until_ms: float | None = None
        """Wall ms a timed pause ends at (None: no timed pause of ours is on)."""

    @property
    def vswitch(self) -> VswitchClient:
        """The chassis' Open_vSwitch DB, connected on first use."""
        if self._vswitch is None:
            self._vswitch = VswitchClient(self.name, self.endpoint.ovs_remote)
        return self._vswitch

    # -- VIFs ------------------------------------------------------------------------------

    def plug(self, vif: Vif) -> None:
        """Plug, then make sure the TAP is up once ovs-vswitchd has opened it.

        os-vif adds the OVS port before it creates the TAP; when the device appears
        ovs-vswitchd opens it and sets IFF_PROMISC by a read-modify-write of its flags,
        which can race the plugger's own ``up`` and leave the TAP down (seen here: every
        probe lost after such a plug). So once vswitchd has given the port an ofport (an
        event on the local Interface row) the TAP is set up if it is not. The plug does
        not wait for that: a vswitchd busy re-installing a restarted controller's flows
        under load took > 10 s to open a port (measured), which would stall the
        migration's first step; a background thread waits instead (bounded)."""
        self._plugger.plug(vif)
        opened = self.vswitch.register(
            "Interface", lambda r: r.name == vif.tap and (interface_ofport(r) or 0) > 0,
            f"ovs-vswitchd to open {vif.tap} on {self.name}",
            lambda: f"Interface {vif.tap}: {self.vswitch.interface(vif.tap)}")
        if opened.fired:
            opened.cancel()
            privileged.ensure_up(self.endpoint.netns, vif.tap)
            return
        threading.Thread(target=self._up_when_opened, args=(opened, vif.tap),
                         name=f"tap-up-{vif.tap}", daemon=True).start()  # fmt: skip

    def _up_when_opened(self, opened: OvsdbWatch, tap: str) -> None:
        try:
            opened.wait(PLUG_OPEN_TIMEOUT_S)
        except WaitTimeout:
            return  # never opened (unplugged meanwhile?): nothing to fix
        privileged.ensure_up(self.endpoint.netns, tap)

    def unplug(self, vif: Vif) -> None:
        self._plugger.unplug(vif)

    def is_plugged(self, vif: Vif) -> bool:
        return (self.vswitch.interface(vif.tap) is not None
                or privileged.tap_exists(self.endpoint.netns, vif.tap))  # fmt: skip

    # -- the TAP gate -------------------------------------------------------------------------

    def close_tap_gate(self, vif: Vif) -> None:
        """Once ovs-vswitchd has opened the port (an event on the local Interface row:
        its ofport), install the gate. Measured: ovs-vswitchd removes a root qdisc it did
        not install when it opens a port (its "no QoS" configuration), so a gate closed
        right after a plug under load was gone again before the switchover. PlugError
        unless the OVS port and the device exist, or if vswitchd does not open the port
        within :data:`GATE_OPEN_PORT_TIMEOUT_S`."""
        row = self.vswitch.interface(vif.tap)
        if row is None:
            raise PlugError(f"{vif.tap} is not plugged on {self.name} (no OVS port): no TAP "
                            "gate to close; plug the VIF first")
        if not dict(row.external_ids).get("iface-id"):  # br-int, a tunnel, a patch port
            raise PlugError(f"{vif.tap} on {self.name} is not a VM's interface (its OVS "
                            "Interface has no external_ids:iface-id): the TAP gate is only "
                            "for a plugged VIF's TAP")
        opened = self.vswitch.register(
            "Interface", lambda r: r.name == vif.tap and (interface_ofport(r) or 0) > 0,
            f"ovs-vswitchd to open {vif.tap} on {self.name}",
            lambda: f"Interface {vif.tap}: {self.vswitch.interface(vif.tap)}")
        try:
            opened.wait(GATE_OPEN_PORT_TIMEOUT_S)
        except WaitTimeout as e:
            raise PlugError(f"cannot close the TAP gate of {vif.tap} on {self.name}: {e}") from e
        finally:
            opened.cancel()
        privileged.close_tap_gate(self.endpoint.netns, vif.tap)

    def open_tap_gate(self, vif: Vif) -> TapGateState:
        dropped = privileged.open_tap_gate(self.endpoint.netns, vif.tap)
        return TapGateState(closed=dropped is not None, dropped=dropped or 0)

    def tap_gate(self, vif: Vif) -> TapGateState:
        state = privileged.tap_gate_state(self.endpoint.netns, vif.tap)
        return TapGateState(*state) if state is not None else TapGateState(closed=False)

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

    def pause_controller(self, resume_after_ms: float | None = None) -> None:
        """``debug/pause``; with ``resume_after_ms`` a timer of THIS process resumes it
        (in the agent: the node owns the deadline; the agent also keeps it in its state
        file, see agent/service.py)."""
        unixctl.call(self._ctl(), "debug/pause")
        if resume_after_ms is None:
            return
        with self._pause_lock:
            if self._resume_timer is not None:
                self._resume_timer.cancel()
            self.paused_until_ms = time.time() * 1000.0 + resume_after_ms
            self._resume_timer = threading.Timer(resume_after_ms / 1000.0, self._timed_resume)
            self._resume_timer.daemon = True
            self._resume_timer.start()

    def _timed_resume(self) -> None:
        with contextlib.suppress(CutoverError, OSError):  # forget()/the next call retries
            self.resume_controller()

    def resume_controller(self) -> None:
        with self._pause_lock:
            if self._resume_timer is not None:
                self._resume_timer.cancel()
            self._resume_timer, self.paused_until_ms = None, None
        unixctl.call(self._ctl(), "debug/resume")

    # -- recovery ---------------------------------------------------------------------------

    def finish_pending(self) -> list[str]:
        return []  # nothing runs in the background here

    def forget(self, lsp: str, tap: str | None = None) -> list[str]:
        cleaned: list[str] = []
        if self._sb is not None:
            for key in (port_ready_key(lsp), path_ready_key(lsp)):
                if self._sb.published(self.name, key) is not None:
                    self._sb.unpublish(self.name, key)
                    cleaned.append(f"SB key {key}")
        if self.paused_until_ms is not None:
            self.resume_controller()
            cleaned.append("timed controller pause")
        if tap and self.is_plugged(Vif(lsp, tap, "", "")):
            self.unplug(Vif(lsp, tap, "", ""))
            cleaned.append(f"TAP and OVS port {tap}")
        return cleaned
