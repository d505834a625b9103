"""The only privileged device operations of the migration core, kept tiny.

Like os-vif's privsep functions (``vif_plug_ovs/linux_net.py``): plain typed arguments,
one system change each, no policy. They shell out to iproute2 inside the hypervisor's
network namespace (None = the root namespace); the TAP gate, on the migration's critical
path, speaks rtnetlink itself (pyroute2: well under a ms in the agent's own namespace,
where spawning ``tc`` costs a few ms).
"""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from cutover.errors import PlugError

_IP_TIMEOUT_S = 10.0


def _run(argv: list[str], check: bool = True) -> bool:
    """Run one command; translate every failure into PlugError. Returns success."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=_IP_TIMEOUT_S)
    except FileNotFoundError as e:
        raise PlugError(f"{argv[0]!r} not found: install the Debian packages iproute2 "
                        "and procps") from e
    except subprocess.TimeoutExpired as e:
        raise PlugError(f"'{' '.join(argv)}' did not finish in {_IP_TIMEOUT_S} s") from e
    if check and r.returncode != 0:
        raise PlugError(f"'{' '.join(argv)}' failed: {r.stderr.strip()}")
    return r.returncode == 0


def _ip(netns: str | None, *args: str, check: bool = True) -> bool:
    return _run(["ip", *(["-n", netns] if netns else []), *args], check)


def tap_exists(netns: str | None, name: str) -> bool:
    if netns is None:
        return Path("/sys/class/net", name).exists()
    return _ip(netns, "link", "show", "dev", name, check=False)


def create_tap(netns: str | None, name: str, mac: str, mtu: int) -> None:
    """A persistent TAP, up, with the VM's MAC and MTU (os-vif ``create_tap``).

    IPv6 stays off on it so the host does not chatter (RS/MLD) on the VM's port.
    """
    _ip(netns, "tuntap", "add", "dev", name, "mode", "tap")
    _ip(netns, "link", "set", "dev", name, "address", mac, "mtu", str(mtu), "up")
    argv = ["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"]
    _run(["ip", "netns", "exec", netns, *argv] if netns else argv, check=False)


IFF_UP = 0x1


def ensure_up(netns: str | None, name: str) -> bool:
    """Set the device up if it is not; True if it had to be (a device that is gone is
    left alone: False)."""
    if netns is None:
        try:
            flags = int(Path("/sys/class/net", name, "flags").read_text().strip(), 16)
        except (OSError, ValueError):
            return False
        if flags & IFF_UP:
            return False
    elif not tap_exists(netns, name):
        return False
    return _ip(netns, "link", "set", "dev", name, "up", check=False)


def delete_tap(netns: str | None, name: str) -> None:
    if tap_exists(netns, name):
        _ip(netns, "link", "del", "dev", name)


# -- the destination TAP gate (docs/switchover.md, "The TAP gate") ---------------------------

TAP_GATE_HANDLE = 0xC07E0000
"""The gate's root qdisc handle (``c07e:``): how a gate of ours is told from any other
qdisc an operator set on the device (only ours is ever removed)."""
_TC_H_ROOT = 0xFFFFFFFF


def _iproute(netns: str | None) -> Any:
    """A pyroute2 rtnetlink socket in ``netns`` (None: this process' namespace). The
    namespace is never created here (``flags=0``): a missing one is a PlugError."""
    try:
        return IPRoute(netns=netns, flags=0) if netns else IPRoute()
    except (OSError, NetlinkError) as e:
        raise PlugError(f"cannot reach network namespace {netns or '(this one)'} by "
                        f"rtnetlink: {e}") from e


def _ifindex(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _gate_qdisc(ipr: Any, index: int) -> Any | None:
    """The gate's root qdisc on device ``index`` (None: not gated)."""
    for q in ipr.get_qdiscs(index=index):
        if q["parent"] == _TC_H_ROOT and q["handle"] == TAP_GATE_HANDLE:
            return q
    return None


def _dropped(qdisc: Any) -> int:
    return int((qdisc.get_attr("TCA_STATS") or {}).get("drop", 0))


def tap_gate_state(netns: str | None, name: str) -> tuple[bool, int] | None:
    """(closed, frames the gate dropped) of device ``name``; None if there is no such
    device. Closed = its root qdisc is the gate's (``pfifo limit 0``, handle ``c07e:``)."""
    with _iproute(netns) as ipr:
        try:
            index = _ifindex(ipr, name)
            if index is None:
                return None
            gate = _gate_qdisc(ipr, index)
        except NetlinkError as e:
            raise PlugError(f"tc qdisc show dev {name}: {e}") from e
    return (True, _dropped(gate)) if gate is not None else (False, 0)


def close_tap_gate(netns: str | None, name: str) -> None:
    """Drop every frame sent to device ``name`` (its root qdisc becomes ``pfifo limit 0``:
    each frame is a qdisc drop; the link and its OVS port are untouched). Idempotent.
    PlugError if the device does not exist, or if its root qdisc is someone else's (a
    handle set: OVS QoS, an operator's shaping) - the gate would replace it and opening
    would not bring it back; the kernel's default root qdisc (handle 0) is replaced."""
    with _iproute(netns) as ipr:
        try:
            index = _ifindex(ipr, name)
            if index is None:
                raise PlugError(f"no device {name} in {netns or 'this namespace'} to "
                                "close the TAP gate of: plug the VIF first")
            for q in ipr.get_qdiscs(index=index):
                if q["parent"] == _TC_H_ROOT and q["handle"] not in (0, TAP_GATE_HANDLE):
                    raise PlugError(
                        f"{name} in {netns or 'this namespace'} has a root qdisc of its own "
                        f"({q.get_attr('TCA_KIND')} {q['handle'] >> 16:x}:, e.g. OVS QoS): "
                        "the TAP gate would replace it and not bring it back; remove it "
                        "or migrate with --activation pre")
            ipr.tc("replace", "pfifo", index, handle=TAP_GATE_HANDLE, limit=0)
        except NetlinkError as e:
            raise PlugError(f"tc qdisc replace dev {name} root pfifo limit 0: {e}") from e


def open_tap_gate(netns: str | None, name: str) -> int | None:
    """Remove the gate of device ``name`` (the kernel's default qdisc comes back: frames
    queue again). Returns the frames the gate dropped, or None if no gate of ours was
    there (a missing device included): a no-op then."""
    with _iproute(netns) as ipr:
        try:
            index = _ifindex(ipr, name)
            if index is None:
                return None
            gate = _gate_qdisc(ipr, index)
            if gate is None:
                return None
            ipr.tc("del", index=index, handle=TAP_GATE_HANDLE, parent=_TC_H_ROOT)
            return _dropped(gate)
        except NetlinkError as e:
            if e.code == errno.ENODEV or e.code == errno.ENOENT:
                return None  # the device or the gate went meanwhile
            raise PlugError(f"tc qdisc del dev {name} root: {e}") from e
