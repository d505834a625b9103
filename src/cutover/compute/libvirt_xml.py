"""libvirt domain XML for a VM whose TAP the plugger pre-created, as Nova renders it.

Nova 2026.1 (``LibvirtConfigGuestInterface.managed``, ``vif_details['ovs_create_tap']``
-> ``VIFPortProfileOpenVSwitch.create_tap``) renders the VIF of an OVS port whose TAP
os-vif already created as ``<interface type='ethernet'>`` with ``<target dev='tapX'
managed='no'/>``: libvirt >= 9.5 refuses an existing TAP without ``managed='no'``, and
with it libvirt and QEMU use the device as it is instead of creating (and on shutdown
deleting) their own. That is what lets the destination's ovn-controller claim the port
and install its flows before the VM arrives - the TAP, its OVS port and its
``iface-id`` exist before ``virDomainMigrate`` starts QEMU there. Without ``create_tap``
Nova renders the classic ``type='bridge'`` + ``<virtualport type='openvswitch'>``, where
libvirt creates the TAP itself and adds it to br-int at VM start (too late for a
pre-switchover readiness check); ``managed='no'`` never appears there.

QEMU is driven directly over QMP in this project; this renderer is what a libvirt
deployment would hand to ``virDomainMigrate`` as the destination XML. Only the parts a
direct-kernel-boot guest needs are rendered; ``virt-xml-validate`` (libvirt's own RelaxNG
schemas) checks the result in the tests.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from cutover.chassis.base import Vif
from cutover.errors import InputError


@dataclass(frozen=True)
class GuestSpec:
    """The non-network part of a small direct-boot guest (the lab's QEMU recipe)."""

    name: str
    kernel: str
    initrd: str
    memory_mib: int = 128
    vcpus: int = 1
    cmdline: str = "console=ttyS0"
    virt_type: str = "qemu"
    """``qemu`` (TCG) where KVM is unusable, as on the lab's nested hosts; ``kvm`` else."""
    arch: str = "x86_64"
    machine: str = "pc"
    emulator: str | None = None
    """QEMU binary; None lets libvirt pick the default for ``arch``."""


def interface_element(vif: Vif, precreated_tap: bool, bridge: str = "br-int",
                      model: str = "virtio") -> ET.Element:
    """The ``<interface>`` Nova renders for an OVS VIF (see the module docstring)."""
    if precreated_tap:
        iface = ET.Element("interface", type="ethernet")
        ET.SubElement(iface, "mac", address=vif.mac)
        ET.SubElement(iface, "target", dev=vif.tap, managed="no")
    else:
        iface = ET.Element("interface", type="bridge")
        ET.SubElement(iface, "mac", address=vif.mac)
        ET.SubElement(iface, "source", bridge=bridge)
        port = ET.SubElement(iface, "virtualport", type="openvswitch")
        ET.SubElement(port, "parameters", interfaceid=_uuid(vif.lsp, "interfaceid (the "
                      "Neutron port UUID, = the OVS iface-id)"))  # fmt: skip
        ET.SubElement(iface, "target", dev=vif.tap)
    ET.SubElement(iface, "model", type=model)
    ET.SubElement(iface, "mtu", size=str(vif.mtu))
    return iface


def interface_xml(vif: Vif, precreated_tap: bool = True) -> str:
    return ET.tostring(interface_element(vif, precreated_tap), encoding="unicode")


def domain_xml(guest: GuestSpec, vifs: Sequence[Vif], precreated_tap: bool = True) -> str:
    """A whole ``<domain>`` for ``guest`` with one ``<interface>`` per VIF; its UUID is the
    VIFs' ``vm_uuid`` (Nova's instance UUID, which os-vif writes as the Interface's
    ``external_ids:vm-uuid``), so the two can never disagree."""
    if not vifs:
        raise InputError(f"domain {guest.name}: no VIF to render")
    uuids = {v.vm_uuid for v in vifs}
    if len(uuids) != 1:
        raise InputError(f"domain {guest.name}: its VIFs name different instances {uuids}")
    if guest.memory_mib < 1 or guest.vcpus < 1:
        raise InputError(f"domain {guest.name}: memory and vCPUs must be positive")
    dom = ET.Element("domain", type=guest.virt_type)
    ET.SubElement(dom, "name").text = guest.name
    ET.SubElement(dom, "uuid").text = _uuid(uuids.pop(), "uuid (the VIFs' vm_uuid)")
    ET.SubElement(dom, "memory", unit="MiB").text = str(guest.memory_mib)
    ET.SubElement(dom, "vcpu").text = str(guest.vcpus)
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type", arch=guest.arch, machine=guest.machine).text = "hvm"
    ET.SubElement(os_, "kernel").text = guest.kernel
    ET.SubElement(os_, "initrd").text = guest.initrd
    ET.SubElement(os_, "cmdline").text = guest.cmdline
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    ET.SubElement(dom, "on_reboot").text = "restart"
    ET.SubElement(dom, "on_crash").text = "destroy"
    devices = ET.SubElement(dom, "devices")
    if guest.emulator:
        ET.SubElement(devices, "emulator").text = guest.emulator
    for vif in vifs:
        devices.append(interface_element(vif, precreated_tap))
    ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(devices, "console", type="pty")
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode") + "\n"


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InputError(f"libvirt needs a UUID as {what}, got {value!r}") from None
