"""Gates and pre-activation, pure logic: which steps each gate runs in which order, what is
refused before anything is built, the held readiness wait's threading, and the port-open
verdict. Real QEMU and OVN: tests/integration/test_qemu.py."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, cast

import pytest

from cutover.bench.results import RunResult
from cutover.bench.runner import BenchPlan
from cutover.bench.stats import key_for
from cutover.chassis.flows import PortFlows
from cutover.chassis.lookup import L2Lookup
from cutover.chassis.port_verdict import WAIT_OPEN, open_decision
from cutover.errors import InputError, InvalidMigration, MigrationError, WaitTimeout
from cutover.evidence import Evidence
from cutover.migration.context import GATES, MigrationContext, MigrationOptions
from cutover.migration.gates import (
    HeldWaitReady,
    ReleaseConvergence,
    check_combination,
    steps_for,
)
from cutover.migration.preactivation import PreActivate
from cutover.migration.steps import Step
from cutover.migration.strategies import STRATEGY_NAMES
from cutover.migration.timeline import Timeline
from cutover.site import ChassisEndpoint, Site, VmSpec

WAITING = [s for s in STRATEGY_NAMES if s != "legacy"]


def _names(**options: str) -> list[str]:
    return [s.name for s in steps_for(MigrationOptions(**options))]  # type: ignore[arg-type]


def test_before_copy_is_the_old_order() -> None:
    assert _names(strategy="claim") == [
        "plug-destination", "arm-readiness", "start-incoming", "prepare-network", "wait-ready",
        "copy-memory", "confirm-ready", "pause-source", "still-alive", "switchover",
        "activate", "cleanup-source"]  # fmt: skip


@pytest.mark.parametrize("strategy", WAITING)
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("activation", ["rarp", "none", "pre"])
def test_every_gate_waits_before_the_switchover_and_switches_once(
    strategy: str, gate: str, activation: str
) -> None:
    names = _names(strategy=strategy, gate=gate, activation=activation)
    assert names.count("switchover") == 1 and names[-1] == "cleanup-source"
    assert names.index("wait-ready") < names.index("confirm-ready") < names.index("pause-source")
    assert ("pre-activate" in names) == (activation == "pre")
    if gate == "before-copy":
        assert names.index("wait-ready") < names.index("copy-memory")
        return
    # the copy starts before the wait and is finished (source stopped) only after it
    assert names.index("start-copy") < names.index("wait-ready") < names.index("finish-copy")
    assert names.index("finish-copy") < names.index("pause-source")
    if activation == "pre":  # activation while the source still runs
        assert names.index("confirm-ready") < names.index("pre-activate") < names.index(
            "finish-copy")
    if gate == "converge-when-ready":
        if activation == "pre":  # released by the pre-activation itself, see below
            assert "release-convergence" not in names
            assert (names.index("wait-ready") < names.index("await-last-pass")
                    < names.index("pre-activate") == names.index("finish-copy") - 1)
            steps = steps_for(MigrationOptions(strategy=strategy, gate=gate,
                                               activation=activation))
            step = steps[names.index("pre-activate")]
            assert isinstance(step, PreActivate)
            assert isinstance(step.then, ReleaseConvergence)
        else:
            assert names.index("release-convergence") == names.index("finish-copy") - 1


def test_pre_activation_before_copy_comes_before_the_copy() -> None:
    names = _names(strategy="port-ready", activation="pre")
    assert names.index("wait-ready") < names.index("pre-activate") < names.index("copy-memory")


@pytest.mark.parametrize(("args", "words"), [
    (("legacy", "before-switchover", "rarp", True), "waits for nothing"),
    (("legacy", "before-copy", "pre", True), "never makes one"),
    (("claim", "before-switchover", "rarp", False), "cannot copy in the background"),
    (("claim", "converge-when-ready", "pre", False), "cannot copy in the background"),
    (("claim", "sideways", "rarp", True), "unknown gate"),
    (("nope", "before-copy", "rarp", True), "unknown strategy"),
])  # fmt: skip
def test_impossible_combinations_are_refused(args: tuple[str, str, str, bool],
                                             words: str) -> None:
    with pytest.raises(InvalidMigration, match=words):
        check_combination(*args)


@pytest.mark.parametrize("gate", GATES)
def test_possible_combinations_pass(gate: str) -> None:
    check_combination("port-ready", gate, "pre", overlaps=True)
    check_combination("legacy", "before-copy", "rarp", overlaps=False)


def test_pre_activation_needs_the_destination_flows() -> None:
    from cutover.migration.orchestrator import validate

    remote = Site(name="t", nb_remote="unix:/nb", sb_remote="unix:/sb",
                  chassis=(ChassisEndpoint("hv1", "unix:/hv1"),
                           ChassisEndpoint("hv2", "tcp:10.0.0.2:6640")),
                  vms=SITE.vms)  # fmt: skip
    with pytest.raises(InvalidMigration, match="no agent"):
        validate(remote, "vm1", "hv2", MigrationOptions(activation="pre"))
    validate(remote, "vm1", "hv2", MigrationOptions(activation="rarp"))


def test_options_refuse_an_unknown_gate_or_activation() -> None:
    with pytest.raises(InvalidMigration, match="unknown gate"):
        MigrationOptions(gate="later")
    with pytest.raises(InvalidMigration, match="unknown activation"):
        MigrationOptions(activation="arp")


def test_bench_plan_validates_gates() -> None:
    assert BenchPlan(strategies=("claim",), gates=GATES).gates == GATES
    with pytest.raises(InputError, match="unknown gate"):
        BenchPlan(strategies=("claim",), gates=("soon",))
    with pytest.raises(InputError, match="gate given twice"):
        BenchPlan(strategies=("claim",), gates=("before-copy", "before-copy"))


def _run(gate: str) -> RunResult:
    return RunResult(strategy="claim", guest="qemu", stall="none", activation="pre", load="L2",
                     vm="vm1", src="hv1", dst="hv2", run_index=0, probe_interval_ms=2.0,
                     probes_sent=100, probes_lost=1, blackout_ms=20.0, loss_outage_ms=2.0,
                     migration_ms=900.0, ready_wait_ms=40.0, duplicates=3, gate=gate)  # fmt: skip


def test_gate_round_trips_and_groups_only_when_compared() -> None:
    run = _run("converge-when-ready")
    assert RunResult.from_dict(run.to_dict()) == run
    old = run.to_dict()
    del old["gate"]  # a file from before gates: every migration then was before-copy
    assert RunResult.from_dict(old).gate == "before-copy"
    assert "gate" not in key_for([_run("before-copy")] * 2)
    assert "gate" in key_for([_run("before-copy"), _run("before-switchover")])


def _flows(blocked: bool, physical: bool = True) -> PortFlows:
    return PortFlows(ofport=4, port_key=2, ingress=physical, egress=physical, egress_table=65,
                     ingress_blocked=blocked, egress_blocked=blocked, rarp_to_controller=blocked,
                     n_in_port=3, n_reg15=12,
                     lookup=L2Lookup(1, "02:00:00:00:00:01", 2, True, 33, 7))  # fmt: skip


def test_open_decision_needs_installed_flows_without_any_block() -> None:
    assert open_decision(_flows(blocked=False)).ready
    for flows in (_flows(blocked=True), _flows(blocked=False, physical=False), None):
        d = open_decision(flows)
        assert not d.ready and WAIT_OPEN in d.waiting_for


# --- the held readiness wait: the worker thread and the hold loop ---------------------------

SITE = Site(name="t", nb_remote="unix:/nb", sb_remote="unix:/sb",
            chassis=tuple(ChassisEndpoint(f"hv{i}", f"unix:/hv{i}") for i in (1, 2, 3)),
            vms=(VmSpec("vm1", "lsp1", "02:00:00:00:00:01", "10.0.0.1", "hv1", "tap1"),))


class FakeReadiness:
    name = "fake"

    def __init__(self, fail: BaseException | None = None, block: bool = False) -> None:
        self.fail, self.block = fail, block
        self.interrupted: BaseException | None = None
        self._wake = threading.Event()

    def wait(self, timeout_s: float) -> Evidence:
        if self.block:
            self._wake.wait(timeout_s)
            if self.interrupted is not None:
                raise self.interrupted
        if self.fail is not None:
            raise self.fail
        return Evidence("fake", 1.0, "ready")

    def interrupt(self, cause: BaseException) -> None:
        self.interrupted = cause
        self._wake.set()


class FakeHolder:
    """keep_held until the event is set; optionally fails (a QEMU error while holding)."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.held = False

    def start_copy(self, vm: VmSpec, dst: ChassisEndpoint, hold_convergence: bool) -> None: ...
    def release_convergence(self, vm: VmSpec) -> None: ...
    def hold_to_last_pass(self, vm: VmSpec) -> None: ...
    def wait_copied(self, vm: VmSpec, dst: ChassisEndpoint) -> None: ...

    def keep_held(self, vm: VmSpec, until: threading.Event, timeout_s: float) -> None:
        self.held = True
        if self.fail is not None:
            raise self.fail
        assert until.wait(timeout_s)


def _ctx(readiness: FakeReadiness, hv: FakeHolder) -> MigrationContext:
    none = cast(Any, None)
    return MigrationContext(
        site=SITE, vm=SITE.vms[0], src=SITE.chassis[0], dst=SITE.chassis[1],
        options=MigrationOptions(ready_timeout_s=2.0), binding=none, sb=none, chassis={},
        hypervisor=cast(Any, hv), readiness=cast(Any, readiness), timeline=Timeline(),
    )  # fmt: skip


def test_held_wait_returns_the_evidence_while_the_copy_was_held() -> None:
    hv = FakeHolder()
    ctx = _ctx(FakeReadiness(), hv)
    HeldWaitReady().do(ctx)
    assert hv.held and ctx.evidence is not None and ctx.evidence.detail == "ready"
    assert ctx.timeline.first("ready") is not None


def test_held_wait_raises_the_readiness_failure() -> None:
    ctx = _ctx(FakeReadiness(fail=WaitTimeout("the claim", 2.0, "none seen")), FakeHolder())
    with pytest.raises(WaitTimeout, match="the claim"):
        HeldWaitReady().do(ctx)


def test_a_hold_failure_interrupts_the_readiness_wait() -> None:
    readiness = FakeReadiness(block=True)
    boom = InvalidMigration("QEMU went away")
    with pytest.raises(InvalidMigration, match="went away"):
        HeldWaitReady().do(_ctx(readiness, FakeHolder(fail=boom)))
    assert readiness.interrupted is boom


def test_stall_from_is_validated_and_names_its_trigger() -> None:
    from cutover.bench.faults import STALL_TRIGGERS, StallPlan

    assert BenchPlan(strategies=("claim",), stall_from="prepare").stall_from == "prepare"
    with pytest.raises(InputError, match="--stall-from"):
        BenchPlan(strategies=("claim",), stall_from="copy")
    injector = StallPlan.parse("none").injector({}, "hv2", "hv3", STALL_TRIGGERS["prepare"])
    injector("incoming.started")  # no stall planned: nothing happens, nothing raises
    assert injector.window_ms is None


# --- pre-activation releasing the held copy ---------------------------------------------

class FakeUnblockWatch:
    """The destination's wait for the rarp blocks to go; records what happened when."""

    def __init__(self, log: list[str], fail: BaseException | None = None) -> None:
        self.log, self.fail = log, fail

    def wait(self, timeout_s: float) -> Evidence:
        self.log.append("blocks gone")
        if self.fail is not None:
            raise self.fail
        return Evidence(check="port-open", detail="open", seen_ms=time.time() * 1000.0)

    def cancel(self) -> None:
        self.log.append("watch cancelled")


class RecordingStep(Step):
    name = "recording"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def do(self, ctx: MigrationContext) -> None:
        self.log.append("then")


def _preactivation_ctx(log: list[str], fail: BaseException | None = None) -> MigrationContext:
    watch = FakeUnblockWatch(log, fail)
    chassis = cast(Any, type("C", (), {"watch_unblocked": lambda self, vif: watch})())
    sb = cast(Any, type("Sb", (), {
        "activate_additional": lambda self, lsp, dst: log.append(f"write {dst}")})())
    ctx = _ctx(FakeReadiness(), FakeHolder())
    return dataclasses.replace(ctx, sb=sb, chassis={SITE.chassis[1].name: chassis})


def test_preactivation_runs_its_next_step_before_cleaning_up_the_wait() -> None:
    """The release of a held copy must not wait for the watch's clean-up (an agent round
    trip): every ms between the blocks going and the source's stop queues clones."""
    log: list[str] = []
    ctx = _preactivation_ctx(log)
    PreActivate(then=RecordingStep(log)).do(ctx)
    assert log == [f"write {SITE.chassis[1].name}", "blocks gone", "then", "watch cancelled"]
    names = [e.name for e in ctx.timeline.events]
    assert names.index("preactivation.write") < names.index("preactivated")


def test_preactivation_timeout_skips_the_next_step_and_cleans_up() -> None:
    log: list[str] = []
    ctx = _preactivation_ctx(log, fail=WaitTimeout("unblocked", 1.0, "drop flows left"))
    with pytest.raises(MigrationError, match="did not lift the rarp blocks"):
        PreActivate(then=RecordingStep(log)).do(ctx)
    assert "then" not in log and log[-1] == "watch cancelled"
