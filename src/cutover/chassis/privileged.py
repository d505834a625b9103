"""The only privileged device operations of the migration core, kept tiny.

Like os-vif's privsep functions (``vif_plug_ovs/linux_net.py``): plain typed arguments,
one system change each, no policy. They shell out to iproute2 inside the hypervisor's
network namespace (None = the root namespace).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

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
