"""Pure logic of the orchestrator: do in order, undo in reverse, stop at the switchover.

Steps here are fakes that record calls; nothing touches OVN (that is tests/integration).
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from cutover.errors import (
    CutoverError,
    InvalidMigration,
    MigrationAborted,
    RollbackIncomplete,
    SwitchedOverIncomplete,
    UnknownChassis,
    UnknownVm,
)
from cutover.migration.context import MigrationContext, MigrationOptions
from cutover.migration.orchestrator import run_steps, validate
from cutover.migration.steps import Step
from cutover.migration.strategies import build_steps
from cutover.migration.timeline import Timeline
from cutover.site import ChassisEndpoint, Site, VmSpec

SITE = Site(
    name="t",
    nb_remote="unix:/nb",
    sb_remote="unix:/sb",
    chassis=tuple(ChassisEndpoint(f"hv{i}", f"unix:/hv{i}") for i in (1, 2, 3)),
    vms=(VmSpec("vm1", "lsp1", "02:00:00:00:00:01", "10.0.0.1", "hv1", "tap1"),),
)


class Fake(Step):
    def __init__(self, name: str, log: list[str], fail: BaseException | None = None,
                 undo_fail: bool = False, no_return: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail
        self.undo_fail = undo_fail
        self.point_of_no_return = no_return

    def do(self, ctx: MigrationContext) -> None:
        self.log.append(f"do {self.name}")
        if self.fail is not None:
            raise self.fail

    def undo(self, ctx: MigrationContext) -> None:
        self.log.append(f"undo {self.name}")
        if self.undo_fail:
            raise CutoverError(f"{self.name} left something")


def _ctx() -> MigrationContext:
    none = cast(Any, None)
    return MigrationContext(
        site=SITE, vm=SITE.vms[0], src=SITE.chassis[0], dst=SITE.chassis[1],
        options=MigrationOptions(), binding=none, sb=none, chassis={}, hypervisor=none,
        readiness=None, timeline=Timeline(),
    )


def test_failure_undoes_done_steps_in_reverse() -> None:
    log: list[str] = []
    steps = [Fake("a", log), Fake("b", log), Fake("c", log, fail=CutoverError("boom")),
             Fake("d", log)]
    with pytest.raises(MigrationAborted) as info:
        run_steps(_ctx(), steps)
    assert log == ["do a", "do b", "do c", "undo c", "undo b", "undo a"]
    assert info.value.step == "c"
    assert "boom" in str(info.value) and "rolled back" in str(info.value)


def test_failed_undo_is_reported_and_the_rest_still_undone() -> None:
    log: list[str] = []
    steps = [Fake("a", log), Fake("b", log, undo_fail=True), Fake("c", log, fail=OSError("x"))]
    with pytest.raises(RollbackIncomplete) as info:
        run_steps(_ctx(), steps)
    assert log == ["do a", "do b", "do c", "undo c", "undo b", "undo a"]
    assert info.value.leftovers == ["b: CutoverError: b left something"]


def test_a_foreign_error_in_an_undo_does_not_stop_the_rollback() -> None:
    log: list[str] = []

    class Broken(Fake):
        def undo(self, ctx: MigrationContext) -> None:
            log.append("undo broken")
            raise TimeoutError("ip hung")

    steps = [Fake("a", log), Broken("broken", log), Fake("c", log, fail=CutoverError("x"))]
    with pytest.raises(RollbackIncomplete) as info:
        run_steps(_ctx(), steps)
    assert log[-2:] == ["undo broken", "undo a"]
    assert "TimeoutError: ip hung" in info.value.leftovers[0]


def test_no_rollback_after_the_point_of_no_return() -> None:
    log: list[str] = []
    steps = [Fake("a", log), Fake("switch", log, no_return=True),
             Fake("after", log, fail=CutoverError("late"))]
    with pytest.raises(SwitchedOverIncomplete) as info:
        run_steps(_ctx(), steps)
    assert log == ["do a", "do switch", "do after"]
    assert "runs on hv2" in str(info.value) and info.value.dst == "hv2"


def test_interrupt_rolls_back_then_propagates() -> None:
    log: list[str] = []
    steps = [Fake("a", log), Fake("b", log, fail=KeyboardInterrupt())]
    with pytest.raises(KeyboardInterrupt):
        run_steps(_ctx(), steps)
    assert log == ["do a", "do b", "undo b", "undo a"]


def test_timeline_records_failure() -> None:
    ctx = _ctx()
    with pytest.raises(MigrationAborted):
        run_steps(ctx, [Fake("a", [], fail=CutoverError("no"))])
    assert ctx.timeline.first("failed") is not None


@pytest.mark.parametrize("strategy", ["legacy", "claim"])
def test_strategies_switch_over_exactly_once_and_clean_up_last(strategy: str) -> None:
    names = [s.name for s in build_steps(strategy)]
    assert names.count("switchover") == 1
    assert names[-1] == "cleanup-source"
    assert [s.point_of_no_return for s in build_steps(strategy)].count(True) == 1


def test_legacy_plugs_after_pause_and_claim_before_copy() -> None:
    legacy = [s.name for s in build_steps("legacy")]
    assert legacy.index("pause-source") < legacy.index("plug-destination")
    claim = [s.name for s in build_steps("claim")]
    assert claim.index("plug-destination") < claim.index("wait-ready") < claim.index(
        "copy-memory"
    )


def test_validate_rejects_bad_requests() -> None:
    with pytest.raises(UnknownVm):
        validate(SITE, "vm9", "hv2", MigrationOptions())
    with pytest.raises(UnknownChassis):
        validate(SITE, "vm1", "hv9", MigrationOptions())
    with pytest.raises(InvalidMigration, match="already runs on hv1"):
        validate(SITE, "vm1", "hv1", MigrationOptions())
    with pytest.raises(InvalidMigration, match="activation"):
        validate(SITE, "vm1", "hv2", MigrationOptions(activation="garp"))
    validate(SITE, "vm1", "hv2", MigrationOptions())


def test_timeline_observers_see_events_in_order() -> None:
    seen: list[str] = []
    tl = Timeline([seen.append])
    tl.mark("a")
    tl.mark("b", at_ms=tl.t0_ms - 5)
    assert seen == ["a", "b"]
    assert [e.name for e in tl.events] == ["b", "a"]


def test_site_round_trip_and_move() -> None:
    moved = SITE.with_vm_on("vm1", "hv2")
    assert moved.vm_named("vm1").chassis == "hv2"
    assert Site.from_dict(moved.to_dict()) == moved
    with pytest.raises(UnknownChassis):
        SITE.with_vm_on("vm1", "hv7")


@pytest.mark.parametrize("strategy", ["claim", "nb-cfg", "port-ready", "path-ready"])
def test_readiness_is_confirmed_right_before_the_point_of_no_return(strategy: str) -> None:
    """The round trip before the pause (the source still runs), events only after it."""
    names = [s.name for s in build_steps(strategy)]
    i = names.index("switchover")
    assert names[i - 3 : i + 1] == ["confirm-ready", "pause-source", "still-alive",
                                    "switchover"]


@pytest.mark.parametrize("strategy", ["port-ready", "path-ready"])
def test_flow_strategies_need_the_destination_controller_socket(strategy: str) -> None:
    with pytest.raises(InvalidMigration, match="no controller_ctl"):
        validate(SITE, "vm1", "hv2", MigrationOptions(strategy=strategy))
    with_ctl = Site(
        name="t", nb_remote="unix:/nb", sb_remote="unix:/sb", vms=SITE.vms,
        chassis=tuple(ChassisEndpoint(c.name, c.ovs_remote, controller_ctl=f"/run/{c.name}.ctl")
                      for c in SITE.chassis),
    )  # fmt: skip
    validate(with_ctl, "vm1", "hv2", MigrationOptions(strategy=strategy))


@pytest.mark.parametrize(
    "options",
    [{"copy_ms": -1.0}, {"pause_ms": float("nan")}, {"ready_timeout_s": 0.0},
     {"activation_timeout_s": -5.0}],
)  # fmt: skip
def test_out_of_range_options_are_refused_when_built(options: dict[str, float]) -> None:
    from cutover.errors import InputError

    with pytest.raises(InputError):
        MigrationOptions(**options)  # type: ignore[arg-type]


def test_still_alive_raises_a_death_seen_during_the_pause() -> None:
    from types import SimpleNamespace

    from cutover.errors import ControllerDown
    from cutover.migration.steps import StillAlive

    ctx = _ctx()
    down = ControllerDown("hv2", "destination", "its control socket closed")
    ctx.liveness = SimpleNamespace(dead=lambda: [down])  # type: ignore[assignment]
    with pytest.raises(ControllerDown, match="hv2"):
        StillAlive().do(ctx)
    ctx.liveness = SimpleNamespace(dead=lambda: [])  # type: ignore[assignment]
    StillAlive().do(ctx)  # nothing died: nothing to say, no I/O
