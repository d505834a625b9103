"""The one seam for "act on chassis X": what the migration core asks of a hypervisor host.

In a real cloud the central side (Neutron's and Nova's conductor roles) never touches a
compute node's local Open_vSwitch database or its br-int: nova-compute + os-vif on that
node plug the VIF, and the node's own agents report what only the node can see. So every
operation the core needs on a chassis goes through :class:`Chassis`, with two
implementations:

- :class:`cutover.chassis.local.LocalChassis` does it in this process (local OVSDB,
  ``ovs-ofctl`` on br-int, iproute2, the controller's unixctl socket): what the per-node
  agent runs on its node, and what the lab can use directly when everything is one host;
- :class:`cutover.chassis.agent_client.AgentChassis` asks that chassis' agent over its
  HTTP API; readiness the agent observes is published in the SB
  (``Chassis_Private.external_ids``), where the central side waits for it with an OVSDB
  event.

Waits are handles: ``watch_*`` arms a wait (before the transaction that can make it true)
and returns an object with ``wait(timeout)``, ``interrupt(cause)`` and ``cancel()``, so no
state hides in attributes of a shared object.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cutover.errors import ControllerDown
from cutover.evidence import Evidence
from cutover.site import VmSpec

DEFAULT_MTU = 1442
"""Geneve overhead on a 1500-byte underlay, as Neutron computes it for OVN."""

@dataclass(frozen=True)
class Vif:
    """A VM's interface as os-vif plugs it (``VIFOpenVSwitch`` with ``create_tap``)."""

    lsp: str
    """Logical switch port = Interface ``external_ids:iface-id``."""
    tap: str
    """TAP device name (<= 15 characters)."""
    mac: str
    vm_uuid: str
    """Interface ``external_ids:vm-uuid``: the instance's UUID."""
    mtu: int = DEFAULT_MTU

    @classmethod
    def of(cls, vm: VmSpec, mtu: int = DEFAULT_MTU) -> Vif:
        """The VIF Nova would build for ``vm`` (the same on every chassis it runs on)."""
        return cls(lsp=vm.lsp, tap=vm.tap, mac=vm.mac, vm_uuid=vm_uuid(vm.name), mtu=mtu)


def vm_uuid(name: str) -> str:
    """A stable instance UUID for a VM name (Nova would pass the instance's own)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cutover:vm:{name}"))


@dataclass(frozen=True)
class PathTarget:
    """What a peer chassis must do for ``lsp``: output its traffic to the destination."""

    lsp: str
    port_key: int
    datapath_key: int
    dst: str
    dst_ips: tuple[str, ...]
    """The destination's encap IPs (from the SB ``Chassis.encaps``)."""


GATE_OPEN_PORT_TIMEOUT_S = 30.0
"""How long closing a TAP gate waits for ovs-vswitchd to open the just-plugged port first
(:meth:`Chassis.close_tap_gate`; an agent client waits that long for the agent's answer)."""


@dataclass(frozen=True)
class TapGateState:
    """A TAP's gate on one chassis (docs/switchover.md, "The TAP gate")."""

    closed: bool
    """Frames sent to the TAP are dropped (the gate's qdisc is its root qdisc)."""
    dropped: int = 0
    """Frames the closed gate dropped so far (its qdisc's drop counter)."""


class Watch(Protocol):
    """An armed wait on one chassis."""

    def wait(self, timeout_s: float) -> Evidence:
        """Block until the condition holds; WaitTimeout (with the state seen) otherwise."""

    def interrupt(self, cause: BaseException) -> None:
        """Make a running or later :meth:`wait` raise ``cause`` now (thread-safe)."""

    def cancel(self) -> None:
        """Stop watching and withdraw anything published for it (idempotent)."""

    def describe(self) -> str:
        """What the wait sees right now (for a timeout's message)."""


@runtime_checkable
class DeliversVerdict(Protocol):
    """A :class:`Watch` that can hand its verdict on from the thread that makes it, before
    the thread blocked in :meth:`Watch.wait` wakes (``LocalPortWatch``: the agent saves
    that wake on the detection latency's path)."""

    def on_verdict(self, deliver: Callable[[Evidence], None]) -> None:
        """Call ``deliver`` once with the verdict; it must not block."""


class ControllerWatch(Protocol):
    def stop(self) -> None:
        """Stop watching (idempotent); no death is reported afterwards."""


DeathCallback = Callable[[ControllerDown], None]


class Chassis(Protocol):
    """One hypervisor host, as the migration core may act on it."""

    name: str

    def plug(self, vif: Vif) -> None:
        """TAP + OVS port with os-vif's external_ids (idempotent). PlugError on failure."""

    def unplug(self, vif: Vif) -> None:
        """Remove the TAP and the OVS port (idempotent)."""

    def is_plugged(self, vif: Vif) -> bool:
        """Whether a TAP or an OVS port of ``vif`` is left on this chassis."""

    def close_tap_gate(self, vif: Vif) -> None:
        """Drop whatever is sent to ``vif``'s TAP here from now on (link, OVS port and OVN's
        view of the port untouched), so that frames cloned to a destination whose incoming
        guest cannot read them yet do not queue. Idempotent. PlugError if the TAP is not
        plugged here (or its OVS interface is not a VM's: no ``iface-id``)."""

    def open_tap_gate(self, vif: Vif) -> TapGateState:
        """Let frames reach ``vif``'s TAP again. A no-op if no gate is closed (a missing
        TAP included); returns the state it found (``dropped``: what the gate dropped)."""

    def tap_gate(self, vif: Vif) -> TapGateState:
        """Whether ``vif``'s TAP has a closed gate here (open if there is no TAP)."""

    def watch_port(self, vif: Vif, use_ovn_installed: bool = True) -> Watch:
        """Arm ``port-ready`` for ``vif`` here: this chassis' own flows for the port are on
        its br-int and the SB shows its claim (readiness/port_ready.py explains why)."""

    def watch_unblocked(self, vif: Vif) -> Watch:
        """Arm a wait until none of ``vif``'s rarp activation blocks (drops, RARP to the
        controller) is left on this chassis' br-int while its flows are installed: the
        pre-activation's proof that traffic passes (migration/preactivation.py)."""

    def watch_path(self, target: PathTarget) -> Watch:
        """Arm a peer check here: this chassis tunnels ``target.lsp``'s traffic to the
        destination (readiness/path_ready.py)."""

    def watch_controller(self, role: str, on_death: DeathCallback) -> ControllerWatch:
        """Report, once, when this chassis' ovn-controller dies (event-driven).
        ControllerDown now if it is not running."""

    def confirm_controller(self, role: str) -> None:
        """ControllerDown unless this chassis' ovn-controller answers right now."""

    def pause_controller(self, resume_after_ms: float | None = None) -> None:
        """Fault injection: freeze ovn-controller (``debug/pause``). With
        ``resume_after_ms`` the chassis itself (its agent) resumes it after that long,
        whether or not the caller is still alive to do it."""

    def resume_controller(self) -> None:
        """Undo :meth:`pause_controller` (``debug/resume``; idempotent)."""

    def forget(self, lsp: str, tap: str | None = None) -> list[str]:
        """Drop what this chassis holds for a migration of ``lsp`` (idempotent): cancel its
        readiness watches, withdraw its published keys, end a timed controller pause, and
        with ``tap`` remove that TAP and OVS port. Returns what it removed, for messages."""

    def finish_pending(self) -> list[str]:
        """Wait for what this seam still does in the background for a migration (through an
        agent: withdrawing a verdict, started after the verdict so that the round trip is
        off the critical path). Returns what failed, for the timeline; never raises."""
