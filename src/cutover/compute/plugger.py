"""The Plugger seam: put a VM's VIF on a hypervisor, or take it away.

``OvsTapPlugger`` does what os-vif's OVS plugin does with ``create_tap`` (os-vif >= 4.3):
an OVS port with the os-vif external_ids on the integration bridge plus a pre-created
TAP, so that the destination's ovn-controller can claim the port and install its flows
*before* the VM arrives. An os-vif based plugger can replace it behind the same Protocol.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from cutover.compute import privileged
from cutover.errors import CutoverError, PlugError
from cutover.ovsdb.vswitch import VswitchClient
from cutover.site import ChassisEndpoint, VmSpec

DEFAULT_MTU = 1442
"""Geneve overhead on a 1500-byte underlay, as Neutron computes it for OVN."""


class Plugger(Protocol):
    def plug(self, vm: VmSpec, chassis: ChassisEndpoint) -> None:
        """Create the VIF of ``vm`` on ``chassis`` (idempotent)."""

    def unplug(self, vm: VmSpec, chassis: ChassisEndpoint) -> None:
        """Remove the VIF of ``vm`` from ``chassis`` (idempotent)."""

    def is_plugged(self, vm: VmSpec, chassis: ChassisEndpoint) -> bool:
        """Whether a TAP or an OVS port of ``vm`` is left on ``chassis``."""


def vm_uuid(vm: VmSpec) -> str:
    """A stable instance UUID for a VM name (Nova would pass the instance's own)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cutover:vm:{vm.name}"))


class OvsTapPlugger:
    def __init__(self, vswitch: dict[str, VswitchClient], mtu: int = DEFAULT_MTU) -> None:
        self._vswitch = vswitch
        self._mtu = mtu

    def _db(self, chassis: ChassisEndpoint) -> VswitchClient:
        try:
            return self._vswitch[chassis.name]
        except KeyError as e:
            raise PlugError(f"no Open_vSwitch connection for chassis {chassis.name!r}") from e

    def plug(self, vm: VmSpec, chassis: ChassisEndpoint) -> None:
        """TAP first, then the port: vswitchd finds the device at once (os-vif does the
        reverse and logs "No such device" once)."""
        if not privileged.tap_exists(chassis.netns, vm.tap):
            privileged.create_tap(chassis.netns, vm.tap, vm.mac, self._mtu)
        try:
            self._db(chassis).add_vif_port(
                chassis.integration_bridge, vm.tap, vm.lsp, vm.mac, vm_uuid(vm)
            )
        except CutoverError:
            privileged.delete_tap(chassis.netns, vm.tap)
            raise

    def unplug(self, vm: VmSpec, chassis: ChassisEndpoint) -> None:
        self._db(chassis).del_port(vm.tap)
        privileged.delete_tap(chassis.netns, vm.tap)

    def is_plugged(self, vm: VmSpec, chassis: ChassisEndpoint) -> bool:
        db = self._db(chassis)
        return db.interface(vm.tap) is not None or privileged.tap_exists(chassis.netns, vm.tap)
