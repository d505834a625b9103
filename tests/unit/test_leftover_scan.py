"""The leftover scan's judgement on hand-made states (the real lab: test_faults.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from cutover.bench.leftovers import scan
from cutover.chassis.base import TapGateState
from cutover.errors import WaitTimeout
from cutover.guest.base import GuestState
from cutover.ovsdb.sb import BindingState
from cutover.site import ChassisEndpoint, Site, VmSpec

VM = VmSpec(name="vm1", lsp="p-vm1", mac="02:00:00:00:00:01", ip="10.0.0.1", chassis="hv1",
            tap="pt-vm1")
SITE = Site(name="p", nb_remote="unix:/nb", sb_remote="unix:/sb",
            chassis=tuple(ChassisEndpoint(name=f"hv{i}", ovs_remote="unix:/x")
                          for i in (1, 2, 3)),
            vms=(VM,))


class FakeWatch:
    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def recheck(self, rows: list[Any]) -> None:
        pass

    def wait(self, timeout_s: float) -> tuple[Any, float]:
        if not self.ok:
            raise WaitTimeout("every chassis to catch up", timeout_s, "hv_cfg=3")
        return None, 0.0

    def cancel(self) -> None:
        pass


class FakeNb:
    def __init__(self, options: dict[str, str], synced: bool = True) -> None:
        self.options, self.synced = options, synced

    def register(self, *args: Any) -> FakeWatch:
        return FakeWatch(self.synced)

    def bump_nb_cfg(self) -> int:
        return 4

    def rows(self, table: str) -> list[Any]:
        return []

    def lsp_options(self, lsp: str) -> dict[str, str]:
        return self.options


class FakeSb:
    def __init__(self, binding: BindingState, keys: dict[str, str] | None = None) -> None:
        self.state, self.keys = binding, keys or {}

    def binding(self, lsp: str) -> BindingState:
        return self.state

    def rows(self, table: str) -> list[Any]:
        return [SimpleNamespace(name="hv2", external_ids={"other": "x", **self.keys})]


class FakeChassis:
    def __init__(self, plugged: bool, gated: bool = False) -> None:
        self.plugged, self.gated = plugged, gated

    def is_plugged(self, vif: Any) -> bool:
        return self.plugged

    def tap_gate(self, vif: Any) -> TapGateState:
        return TapGateState(closed=self.gated, dropped=12 if self.gated else 0)


class FakeHv:
    def __init__(self, where: dict[str, str]) -> None:
        self.where = where

    def guest_state(self, vm: VmSpec, chassis: str) -> GuestState:
        return GuestState(self.where.get(chassis, "missing"))


def binding(chassis: str = "hv1", additional: tuple[str, ...] = (),
            requested_additional: tuple[str, ...] = ()) -> BindingState:
    return BindingState(lsp=VM.lsp, chassis=chassis, additional=additional,
                        requested=chassis, requested_additional=requested_additional,
                        up=True, activated=())  # fmt: skip


def clients(nb: FakeNb, sb: FakeSb, plugged: tuple[str, ...] = ("hv1",),
            gated: tuple[str, ...] = ()) -> Any:
    return SimpleNamespace(nb=nb, sb=sb, chassis={
        f"hv{i}": FakeChassis(f"hv{i}" in plugged, f"hv{i}" in gated) for i in (1, 2, 3)})


def test_a_clean_site_is_clean() -> None:
    result = scan(SITE, clients(FakeNb({"requested-chassis": "hv1"}), FakeSb(binding())),
                  FakeHv({"hv1": "running"}))
    assert result.clean and result.sync_ms is not None
    assert result.to_dict()["clean"] is True


def test_every_kind_of_leftover_is_named() -> None:
    nb = FakeNb({"requested-chassis": "hv1,hv2", "activation-strategy": "rarp"}, synced=False)
    sb = FakeSb(binding(additional=("hv2",), requested_additional=("hv2",)),
                {"cutover-port-ready:p-vm1": "{}"})
    result = scan(SITE, clients(nb, sb, plugged=("hv2",)),
                  FakeHv({"hv1": "running", "hv2": "incoming"}),
                  extra=[lambda: ["process x is stopped"]])
    text = "\n".join(result.items)
    for expected in ("sync: WaitTimeout", "requested-chassis=hv1,hv2",
                     "activation-strategy=rarp", "additional_chassis=['hv2']",
                     "Chassis_Private hv2: external_ids cutover-port-ready:p-vm1",
                     "hv2: TAP/OVS port pt-vm1", "hv1: vm1's own TAP/OVS port pt-vm1 is missing",
                     "hv2: a guest of vm1 is incoming", "process x is stopped"):
        assert expected in text, (expected, text)
    assert "other" not in text and result.sync_ms is None and not result.clean


def test_a_tap_left_gated_is_named() -> None:
    """A migration that ended with the destination TAP's gate closed (``pre-gated``): the
    VM runs behind a TAP that drops all it is sent."""
    result = scan(SITE, clients(FakeNb({"requested-chassis": "hv1"}), FakeSb(binding()),
                                gated=("hv1",)), FakeHv({"hv1": "running"}))
    assert result.items == ("hv1: pt-vm1 of vm1 has its TAP gate closed (dropped 12 frames)",)
