"""The underlay "switch": a Linux bridge in its own namespace that joins the chassis.

Each chassis reaches the others' Geneve endpoints through one veth into this bridge. The
bridge sits in a namespace of its own (``{prefix}-ul``) rather than the root namespace so that
the lab adds nothing to the host's interfaces and deleting that namespace removes the bridge
and every underlay veth end with it. STP is off (the default), so ports forward at once.
"""

from __future__ import annotations

from cutover.lab import host
from cutover.lab.manifest import Manifest
from cutover.lab.topology import ChassisSpec, LabTopology

UNDERLAY_MTU = 9000
"""Jumbo underlay, so a 1500-byte guest frame still fits after Geneve encapsulation (the
userspace datapath does not fragment tunnel packets)."""


def build_underlay(topo: LabTopology, manifest: Manifest) -> None:
    """Namespace (recorded before anything goes into it), loopback, no IPv6, the bridge."""
    ns = topo.underlay_netns
    host.netns_add(ns)
    manifest.add_netns(ns)
    host.netns_setup(ns)
    ip = host.tool("ip")
    host.run([ip, "-n", ns, "link", "add", topo.underlay_bridge, "mtu", str(UNDERLAY_MTU),
              "type", "bridge"])
    host.run([ip, "-n", ns, "link", "set", topo.underlay_bridge, "up"])


def connect_chassis(topo: LabTopology, ch: ChassisSpec) -> None:
    """One veth between the chassis namespace and the underlay bridge.

    Created with both ends placed directly into their namespaces in one command, so no
    interface ever appears in the root namespace, even briefly. It needs no manifest entry of
    its own: deleting either namespace deletes the pair.
    """
    ip = host.tool("ip")
    mtu = str(UNDERLAY_MTU)
    host.run([ip, "link", "add", ch.veth, "mtu", mtu, "netns", ch.netns, "type", "veth",
              "peer", "name", ch.ul_veth, "mtu", mtu, "netns", topo.underlay_netns])
    host.run([ip, "-n", topo.underlay_netns, "link", "set", ch.ul_veth, "master",
              topo.underlay_bridge, "up"])
    host.run([ip, "-n", ch.netns, "link", "set", ch.veth, "up"])


def underlay_ports(topo: LabTopology) -> list[str]:
    """Interfaces enslaved to the underlay bridge (for status and diagnostics)."""
    if not host.netns_exists(topo.underlay_netns):
        return []
    out = host.run([host.tool("ip"), "-n", topo.underlay_netns, "-o", "link", "show",
                    "master", topo.underlay_bridge], check=False)
    names = []
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            names.append(parts[1].strip().split("@")[0])
    return names
