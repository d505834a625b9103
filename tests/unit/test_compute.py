"""Pure logic of the compute side: libvirt interface XML and instance UUIDs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from cutover.chassis.base import Vif, vm_uuid
from cutover.compute.libvirt_xml import interface_xml
from cutover.site import VmSpec

VM = VmSpec(name="vm1", lsp="ls-vm1", mac="02:00:00:00:00:01", ip="10.0.0.1", chassis="hv1",
            tap="tap-vm1")


def test_interface_uses_the_precreated_tap_unmanaged() -> None:
    root = ET.fromstring(interface_xml(VM, 1442))
    assert root.tag == "interface" and root.get("type") == "ethernet"
    target = root.find("target")
    assert target is not None
    assert target.get("dev") == "tap-vm1" and target.get("managed") == "no"
    mac = root.find("mac")
    assert mac is not None and mac.get("address") == VM.mac
    mtu = root.find("mtu")
    assert mtu is not None and mtu.get("size") == "1442"


def test_vm_uuid_is_stable_and_distinct() -> None:
    assert vm_uuid(VM.name) == vm_uuid(VM.name) != vm_uuid("vm2")
    assert Vif.of(VM).vm_uuid == vm_uuid("vm1") and Vif.of(VM).tap == "tap-vm1"
