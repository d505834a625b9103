"""The TAP gate (``--activation pre-gated``), pure logic with fakes: where its steps sit,
what is refused before anything is built, that the source's STOP opens it, and that every
backstop (RESUME, rollback, the end of the migration, a recovery) opens a gate that is
still closed - once. The real lab: tests/integration/test_qemu.py."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from cutover.chassis.base import TapGateState, Vif
from cutover.chassis.local import LocalChassis
from cutover.errors import ChassisUnreachable, InvalidMigration, MigrationAborted, PlugError
from cutover.guest.base import GuestState
from cutover.migration.context import GATES, MigrationContext, MigrationOptions
from cutover.migration.gates import check_combination, steps_for
from cutover.migration.orchestrator import run_steps
from cutover.migration.preactivation import PreActivate
from cutover.migration.steps import Step
from cutover.migration.tap_gate import CloseTapGate, OpenTapGate
from cutover.migration.timeline import Timeline
from cutover.ovsdb.vswitch import VswitchClient
from cutover.site import ChassisEndpoint, VmSpec

VM = VmSpec(name="vm1", lsp="p-vm1", mac="02:00:00:00:00:01", ip="10.0.0.1", chassis="hv1",
            tap="pt-vm1")


def _names(gate: str, activation: str = "pre-gated") -> list[str]:
    return [s.name for s in steps_for(MigrationOptions(strategy="port-ready", gate=gate,
                                                       activation=activation))]


@pytest.mark.parametrize("gate", GATES)
def test_the_gate_closes_before_the_claim_and_has_a_backstop(gate: str) -> None:
    names = _names(gate)
    assert names[:5] == ["plug-destination", "arm-readiness", "start-incoming",
                         "close-tap-gate", "prepare-network"]
    assert names.index("open-tap-gate") == names.index("switchover") + 1
    assert names.index("open-tap-gate") < names.index("activate")
    # otherwise the same steps as pre, in the same order
    assert [n for n in names if "tap-gate" not in n] == _names(gate, "pre")
    assert not any("tap-gate" in n for n in _names(gate, "pre") + _names(gate, "rarp"))
    if gate == "converge-when-ready":  # the copy is still released by the pre-activation
        step = steps_for(MigrationOptions(strategy="port-ready", gate=gate,
                                          activation="pre-gated"))[names.index("pre-activate")]
        assert isinstance(step, PreActivate) and step.then is not None


def test_pre_gated_is_refused_where_the_source_stop_is_no_event() -> None:
    with pytest.raises(InvalidMigration, match="--guest qemu or --activation pre"):
        check_combination("port-ready", "before-copy", "pre-gated", overlaps=False,
                          guests="--guest emulated", signals_stop=False)
    with pytest.raises(InvalidMigration, match="never makes one"):
        check_combination("legacy", "before-copy", "pre-gated", overlaps=True,
                          signals_stop=True)
    for gate in GATES:
        check_combination("port-ready", gate, "pre-gated", overlaps=True, signals_stop=True)
    check_combination("port-ready", "before-copy", "pre", overlaps=False)  # unchanged


def test_the_emulated_guest_is_refused_before_anything_is_built() -> None:
    from cutover.guest.emulated import EmulatedHypervisor
    from cutover.migration.gates import check_gate

    hv = EmulatedHypervisor.__new__(EmulatedHypervisor)  # no lab: only its type matters
    with pytest.raises(InvalidMigration, match="pre-gated"):
        check_gate(MigrationOptions(strategy="port-ready", activation="pre-gated"), hv)


# -- the steps, with a fake chassis and hypervisor ---------------------------------------------


class FakeChassis:
    """A TAP gate as the chassis seam keeps it (``plugged``: whether the TAP exists)."""

    def __init__(self, name: str, plugged: bool = True) -> None:
        self.name, self.plugged = name, plugged
        self.closed = False
        self.calls: list[str] = []
        self.fail_open = 0
        """How many opens fail (ChassisUnreachable) before one works."""

    def close_tap_gate(self, vif: Vif) -> None:
        if not self.plugged:
            raise PlugError(f"{vif.tap} is not plugged on {self.name}")
        self.calls.append("close")
        self.closed = True

    def open_tap_gate(self, vif: Vif) -> TapGateState:
        self.calls.append("open")
        if self.fail_open:
            self.fail_open -= 1
            raise ChassisUnreachable(f"agent of {self.name}: down")
        found = TapGateState(self.closed, 5 if self.closed else 0)
        self.closed = False
        return found

    def finish_pending(self) -> list[str]:
        return []


class FakeHv:
    """Signals the source's STOP when the test says so (:meth:`stop`)."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[float], None]] = []

    def on_source_stopped(self, vm: VmSpec, callback: Callable[[float], None]) -> None:
        self.callbacks.append(callback)

    def stop(self, at_ms: float = 1000.0) -> None:
        for callback in self.callbacks:
            callback(at_ms)

    def guest_state(self, vm: VmSpec, chassis: str) -> GuestState:
        return GuestState("running")


def _ctx(dst: FakeChassis, hv: FakeHv | None = None) -> MigrationContext:
    return cast(MigrationContext, SimpleNamespace(
        vm=VM, src=ChassisEndpoint("hv1", "unix:/a"), dst=ChassisEndpoint("hv2", "unix:/b"),
        chassis={"hv2": dst}, hypervisor=hv or FakeHv(), timeline=Timeline(), tap_gate=None,
        liveness=None, passive=[], options=MigrationOptions()))


def _marks(ctx: MigrationContext, name: str) -> list[str]:
    return [e.detail for e in ctx.timeline.events if e.name == name]


def test_the_source_stop_opens_the_gate_and_the_backstop_does_nothing_more() -> None:
    dst, hv = FakeChassis("hv2"), FakeHv()
    ctx = _ctx(dst, hv)
    CloseTapGate().do(ctx)
    assert dst.closed and len(hv.callbacks) == 1 and _marks(ctx, "tap-gate.closed")
    hv.stop()  # opened in the driver's own call, before it returns
    assert not dst.closed
    (detail,) = _marks(ctx, "tap-gate.opened")
    assert detail.startswith("source STOP; ") and "after the source's STOP" in detail
    assert "dropped 5 frames" in detail
    OpenTapGate().do(ctx)  # the RESUME's backstop: already open, nothing asked
    assert dst.calls == ["close", "open"] and len(_marks(ctx, "tap-gate.opened")) == 1


def test_the_resume_backstop_opens_a_gate_whose_stop_open_failed() -> None:
    dst, hv = FakeChassis("hv2"), FakeHv()
    dst.fail_open = 1
    ctx = _ctx(dst, hv)
    CloseTapGate().do(ctx)
    hv.stop()  # the failure is marked, not raised into the hypervisor driver
    assert dst.closed and "down" in _marks(ctx, "tap-gate.open-failed")[0]
    OpenTapGate().do(ctx)
    assert not dst.closed
    assert _marks(ctx, "tap-gate.opened")[0].startswith("destination RESUME (backstop)")


def test_closing_an_unplugged_tap_fails_and_registers_nothing() -> None:
    dst, hv = FakeChassis("hv2", plugged=False), FakeHv()
    ctx = _ctx(dst, hv)
    with pytest.raises(PlugError, match="not plugged"):
        CloseTapGate().do(ctx)
    assert hv.callbacks == [] and not _marks(ctx, "tap-gate.closed")


def test_a_close_whose_answer_was_lost_is_opened_by_its_own_undo() -> None:
    """The chassis closed the gate but the answer never came back (an agent's connection
    lost): the failed step's undo must still open it."""
    dst, hv = FakeChassis("hv2"), FakeHv()

    def closed_then_lost(vif: Vif) -> None:
        dst.closed = True
        raise ChassisUnreachable(f"agent of {dst.name}: connection reset")

    dst.close_tap_gate = closed_then_lost  # type: ignore[method-assign]
    ctx = _ctx(dst, hv)
    with pytest.raises(MigrationAborted, match="close-tap-gate"):
        run_steps(ctx, [CloseTapGate()])
    assert not dst.closed and dst.calls == ["open"]
    assert _marks(ctx, "tap-gate.opened")[0].startswith("rollback")


class Boom(Step):
    name = "boom"

    def do(self, ctx: MigrationContext) -> None:
        raise ChassisUnreachable("the destination went away")


def test_a_rollback_opens_the_gate() -> None:
    dst, hv = FakeChassis("hv2"), FakeHv()
    ctx = _ctx(dst, hv)
    with pytest.raises(MigrationAborted, match="boom"):
        run_steps(ctx, [CloseTapGate(), Boom()])
    assert not dst.closed and dst.calls == ["close", "open"]
    assert _marks(ctx, "tap-gate.opened")[0].startswith("rollback")


def test_the_end_of_a_migration_opens_a_gate_left_closed() -> None:
    """The last backstop (run_steps' clean-up), e.g. a switched-over migration whose
    RESUME backstop failed too: open once more at the end."""
    dst, hv = FakeChassis("hv2"), FakeHv()
    ctx = _ctx(dst, hv)

    class FailingOpen(Step):
        name = "failing-open"

        def do(self, ctx: MigrationContext) -> None:
            dst.fail_open = 1
            OpenTapGate().do(ctx)

    class Switch(Step):
        name = "switch"
        point_of_no_return = True

        def do(self, ctx: MigrationContext) -> None:
            pass

    with pytest.raises(Exception, match="failing-open"):
        run_steps(ctx, [CloseTapGate(), Switch(), FailingOpen()])
    assert not dst.closed
    assert _marks(ctx, "tap-gate.opened")[0].startswith("the migration ended")


def test_a_recovery_opens_the_gate_from_the_record() -> None:
    """A fresh process (no gate object: the journal says the close was intended): the
    undo and the redo ask the chassis to open, which is a no-op if it is open."""
    dst = FakeChassis("hv2")
    dst.closed = True
    ctx = _ctx(dst)
    step = CloseTapGate()
    assert step.changes(ctx) == {"chassis": "hv2", "tap_gate_closed": "pt-vm1"}
    step.undo(ctx)
    assert not dst.closed and _marks(ctx, "tap-gate.opened")[0].startswith("rollback")
    OpenTapGate().do(_ctx(dst))  # redo after a switchover: open already, nothing marked
    assert dst.calls == ["open", "open"]


def test_the_chassis_closes_a_gate_only_on_a_vifs_tap() -> None:
    """An OVS Interface that is not a VM's (br-int's internal port, a tunnel: no
    ``iface-id``) is refused before anything is waited for or changed."""
    ch = LocalChassis(ChassisEndpoint(name="hv2", ovs_remote="unix:/nonexistent/db.sock"))

    class Vswitch:
        def interface(self, name: str) -> Any:
            return SimpleNamespace(name=name, external_ids={}, ofport=[65534])

        def register(self, *args: Any) -> Any:
            raise AssertionError("nothing may be waited for")

    ch._vswitch = cast(VswitchClient, Vswitch())
    with pytest.raises(PlugError, match="br-int on hv2 is not a VM's interface"):
        ch.close_tap_gate(Vif("", "br-int", "", ""))
