"""The TAP gate's privileged functions on a real device (chassis/privileged.py): a veth
device in a namespace of this test's own, no lab. The gate replaces only the kernel's
default root qdisc; a root qdisc someone else set (OVS QoS, an operator's shaping) is
refused and left as it was, since opening the gate could not bring it back."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from labkit import lab_prefix

from cutover.chassis import privileged
from cutover.errors import PlugError

NETNS = lab_prefix("coqd") + "-gate"
"""This module's own namespace (no lab of that prefix is built)."""


@pytest.fixture
def dev() -> Iterator[str]:
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        subprocess.run(["ip", "-n", NETNS, "link", "add", "g0", "type", "veth",
                        "peer", "name", "g1"], check=True)  # fmt: skip
        subprocess.run(["ip", "-n", NETNS, "link", "set", "g0", "up"], check=True)
        yield "g0"
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], check=True)


def _root(dev: str) -> str:
    out = subprocess.run(["tc", "-n", NETNS, "qdisc", "show", "dev", dev, "root"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return out.split("\n")[0]


def test_the_gate_replaces_the_default_qdisc_and_opening_restores_it(dev: str) -> None:
    before = _root(dev)
    privileged.close_tap_gate(NETNS, dev)
    privileged.close_tap_gate(NETNS, dev)  # idempotent
    assert privileged.tap_gate_state(NETNS, dev) == (True, 0)
    assert "pfifo c07e: " in _root(dev) and "limit 0p" in _root(dev)
    assert privileged.open_tap_gate(NETNS, dev) == 0
    assert privileged.open_tap_gate(NETNS, dev) is None  # a no-op now
    assert _root(dev) == before


def test_a_root_qdisc_of_someone_else_is_refused_and_kept(dev: str) -> None:
    subprocess.run(["tc", "-n", NETNS, "qdisc", "add", "dev", dev, "root", "handle", "1:",
                    "htb"], check=True)  # fmt: skip
    with pytest.raises(PlugError, match=r"htb 1:.*--activation pre"):
        privileged.close_tap_gate(NETNS, dev)
    assert _root(dev).startswith("qdisc htb 1: "), _root(dev)
    assert privileged.tap_gate_state(NETNS, dev) == (False, 0)
