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


def _ip(netns: str | None, *args: str) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=_IP_TIMEOUT_S)
    except FileNotFoundError as e:
        raise PlugError("'ip' not found: install the Debian package iproute2") from e
    except subprocess.CalledProcessError as e:
        raise PlugError(f"'{' '.join(argv)}' failed: {e.stderr.strip()}") from e
    except subprocess.TimeoutExpired as e:
        raise PlugError(f"'{' '.join(argv)}' did not finish in {_IP_TIMEOUT_S} s") from e


def tap_exists(netns: str | None, name: str) -> bool:
    if netns is None:
        return Path("/sys/class/net", name).exists()
    r = subprocess.run(
        ["ip", "-n", netns, "link", "show", "dev", name],
        capture_output=True,
        timeout=_IP_TIMEOUT_S,
    )
    return r.returncode == 0


def create_tap(netns: str | None, name: str, mac: str, mtu: int) -> None:
    """A persistent TAP, up, with the VM's MAC and MTU (os-vif ``create_tap``).

    IPv6 stays off on it so the host does not chatter (RS/MLD) on the VM's port.
    """
    _ip(netns, "tuntap", "add", "dev", name, "mode", "tap")
    _ip(netns, "link", "set", "dev", name, "address", mac, "mtu", str(mtu), "up")
    argv = ["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    subprocess.run(argv, capture_output=True, timeout=_IP_TIMEOUT_S)


def delete_tap(netns: str | None, name: str) -> None:
    if tap_exists(netns, name):
        _ip(netns, "link", "del", "dev", name)
