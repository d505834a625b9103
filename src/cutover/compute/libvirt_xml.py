"""The libvirt ``<interface>`` for a VIF whose TAP the plugger pre-created.

Nova 2026.1 (``LibvirtConfigGuestInterface.managed``) renders ``type='ethernet'`` with
``<target dev='tapX' managed='no'/>`` when os-vif created the TAP (``create_tap``):
libvirt >= 9.5 refuses an existing TAP without ``managed='no'``, and with it libvirt and
QEMU use the device as it is instead of creating (and later deleting) their own. That is
what lets the destination's ovn-controller claim the port and install its flows before
the VM arrives. QEMU is driven directly over QMP in this project; this renderer is what
a libvirt deployment would feed to ``virDomainMigrate`` as the destination XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from cutover.site import VmSpec


def interface_xml(vm: VmSpec, mtu: int, model: str = "virtio") -> str:
    iface = ET.Element("interface", type="ethernet")
    ET.SubElement(iface, "mac", address=vm.mac)
    ET.SubElement(iface, "model", type=model)
    ET.SubElement(iface, "mtu", size=str(mtu))
    ET.SubElement(iface, "target", dev=vm.tap, managed="no")
    return ET.tostring(iface, encoding="unicode")
