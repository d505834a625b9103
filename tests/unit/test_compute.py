"""Pure logic of the compute side: libvirt domain XML (validated by libvirt's own
``virt-xml-validate``) and instance UUIDs."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from cutover.chassis.base import Vif, vm_uuid
from cutover.compute.libvirt_xml import GuestSpec, domain_xml, interface_xml
from cutover.errors import InputError
from cutover.site import VmSpec

VM = VmSpec(name="vm1", lsp="ls-vm1", mac="02:00:00:00:00:01", ip="10.0.0.1", chassis="hv1",
            tap="tap-vm1")
VIF = Vif.of(VM, mtu=1442)
GUEST = GuestSpec(name="vm1", kernel="/var/lib/cutover/vmlinuz", initrd="/var/lib/cutover/initrd")
NEUTRON_PORT = "6f1c1f0e-8d53-4c7e-9a53-6a1e2f9b1c2d"
"""In OpenStack the LSP name (and the OVS iface-id) is the Neutron port's UUID."""


def _validate(xml: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``virt-xml-validate FILE domain`` (Debian libvirt-clients; it runs xmllint)."""
    tool = shutil.which("virt-xml-validate")
    if tool is None or shutil.which("xmllint") is None:
        message = ("virt-xml-validate/xmllint missing: install the Debian packages "
                   "libvirt-clients and libxml2-utils (scripts/install-debs does)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    return subprocess.run([tool, str(path), "domain"], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_domain_for_a_precreated_tap_validates(tmp_path: Path) -> None:
    xml = domain_xml(GUEST, [VIF])
    r = _validate(xml, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validates" in r.stdout + r.stderr
    dom = ET.fromstring(xml)
    assert dom.tag == "domain" and dom.get("type") == "qemu"
    assert dom.findtext("name") == "vm1"
    assert dom.findtext("uuid") == vm_uuid("vm1") == VIF.vm_uuid
    assert dom.findtext("os/kernel") == GUEST.kernel and dom.findtext("os/initrd") == GUEST.initrd
    iface = dom.find("devices/interface")
    assert iface is not None and iface.get("type") == "ethernet"
    target, mac = iface.find("target"), iface.find("mac")
    model, mtu = iface.find("model"), iface.find("mtu")
    assert target is not None and target.attrib == {"dev": "tap-vm1", "managed": "no"}
    assert mac is not None and mac.get("address") == VM.mac
    assert model is not None and model.get("type") == "virtio"
    assert mtu is not None and mtu.get("size") == "1442"
    assert iface.find("source") is None and iface.find("virtualport") is None


def test_validation_rejects_what_libvirt_rejects(tmp_path: Path) -> None:
    """The schema check is not a rubber stamp: the same document with a ``managed``
    value libvirt does not know, or without its name, fails."""
    xml = domain_xml(GUEST, [VIF])
    bad_managed = xml.replace('managed="no"', 'managed="sometimes"')
    assert bad_managed != xml
    assert _validate(bad_managed, tmp_path).returncode != 0
    no_name = xml.replace("<name>vm1</name>", "")
    assert no_name != xml
    assert _validate(no_name, tmp_path).returncode != 0


def test_managed_no_only_for_a_precreated_tap(tmp_path: Path) -> None:
    vif = replace(VIF, lsp=NEUTRON_PORT)
    xml = domain_xml(GUEST, [vif], precreated_tap=False)
    r = _validate(xml, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    iface = ET.fromstring(xml).find("devices/interface")
    assert iface is not None and iface.get("type") == "bridge"
    target, source = iface.find("target"), iface.find("source")
    params = iface.find("virtualport/parameters")
    assert target is not None and target.attrib == {"dev": "tap-vm1"}  # no managed='no'
    assert source is not None and source.get("bridge") == "br-int"
    assert params is not None and params.get("interfaceid") == NEUTRON_PORT
    assert "managed" not in xml
    assert 'managed="no"' in domain_xml(GUEST, [vif], precreated_tap=True)


def test_interface_alone() -> None:
    root = ET.fromstring(interface_xml(VIF))
    target = root.find("target")
    assert root.get("type") == "ethernet"
    assert target is not None and target.get("managed") == "no"


def test_bad_domains_are_refused() -> None:
    with pytest.raises(InputError, match="no VIF"):
        domain_xml(GUEST, [])
    with pytest.raises(InputError, match="different instances"):
        domain_xml(GUEST, [VIF, replace(VIF, tap="tap-vm1b", vm_uuid=vm_uuid("vm2"))])
    with pytest.raises(InputError, match="UUID as uuid"):
        domain_xml(GUEST, [replace(VIF, vm_uuid="not-a-uuid")])
    with pytest.raises(InputError, match="UUID as interfaceid"):
        domain_xml(GUEST, [VIF], precreated_tap=False)  # "ls-vm1" is no port UUID
    with pytest.raises(InputError, match="positive"):
        domain_xml(replace(GUEST, memory_mib=0), [VIF])


def test_vm_uuid_is_stable_and_distinct() -> None:
    assert vm_uuid(VM.name) == vm_uuid(VM.name) != vm_uuid("vm2")
    assert Vif.of(VM).vm_uuid == vm_uuid("vm1") and Vif.of(VM).tap == "tap-vm1"
