"""--fault parsing (every refusal before anything is built), the injector's timing and
undo with a recording target, and the faults section of the report."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from cutover.bench.fault_report import fault_rows, markdown_section
from cutover.bench.faults import FAULT_KINDS, FaultPlan, StallInjector, end_injections
from cutover.bench.results import BenchResult, RunResult
from cutover.bench.runner import Condition
from cutover.errors import InputError, LabError
from cutover.lab.manifest import ProcessEntry


def test_every_kind_parses_with_its_default_and_with_a_number() -> None:
    for name, kind in FAULT_KINDS.items():
        assert FaultPlan.parse(name).spec == f"{name}:{kind.default_ms:g}"
        assert FaultPlan.parse(f" {name.upper()}:250 ").ms == 250.0
    assert FaultPlan.parse("none").kind is None
    assert FaultPlan.parse("dst-controller-restart-ready:0").ms == 0.0
    assert Condition(fault="sb-pause").checked().fault == "sb-pause:2000"


@pytest.mark.parametrize("spec", [
    "sb-crash", "", "sb-pause:", "sb-pause:abc", "sb-pause:0", "sb-pause:-5",
    "northd-pause:nan", "sb-restart:600001", "none:3", "sb-pause:inf",
])  # fmt: skip
def test_bad_faults_are_refused(spec: str) -> None:
    with pytest.raises(InputError, match="fault"):
        FaultPlan.parse(spec)


def test_a_fault_without_a_lab_is_refused() -> None:
    with pytest.raises(InputError, match="needs a lab"):
        FaultPlan.parse("sb-pause:10").injector(None, "hv2")
    FaultPlan.parse("none").injector(None, "hv2")  # nothing to act on: fine


class Target:
    """Records what a fault did, instead of doing it."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[float, str]] = []
        self.fail = fail
        self.proc = ProcessEntry(pid=4242, marker="/lab/", name="ovsdb-server-sb",
                                 group="central")
        self.restarted = threading.Event()

    def _rec(self, what: str) -> None:
        if self.fail:
            raise LabError(f"{what} failed")
        self.calls.append((time.monotonic(), what))

    def sb_server(self) -> ProcessEntry:
        return self.proc

    def sb_leader(self) -> ProcessEntry:
        return self.proc

    def nb_leader(self) -> ProcessEntry:
        return ProcessEntry(pid=4444, marker="/lab/", name="ovsdb-server-nb2", group="central")

    def northd(self) -> ProcessEntry:
        return ProcessEntry(pid=4343, marker="/lab/", name="ovn-northd", group="central")

    def signal(self, proc: ProcessEntry, sig: signal.Signals) -> None:
        self._rec(f"{sig.name} {proc.name}")

    def restart(self, proc: ProcessEntry, down_ms: float = 0.0, kill: bool = False) -> int:
        self._rec(f"restart {proc.name} down={down_ms:g} kill={kill}")
        return 99

    def restart_controller(self, chassis_name: str) -> tuple[float, float, int]:
        self._rec(f"restart-controller {chassis_name}")
        now = time.time() * 1000.0
        self.restarted.set()
        return now, now + 4.0, 77


def test_a_pause_starts_on_its_trigger_only_and_is_continued_after_its_duration() -> None:
    target = Target()
    inj = FaultPlan.parse("sb-pause:100").injector(target, "hv2")
    inj("plug.done")
    assert not inj.started
    inj("ready.armed")
    inj("ready.armed")  # once
    inj.finish()
    names = [c for _, c in target.calls]
    assert names == ["SIGSTOP ovsdb-server-sb", "SIGCONT ovsdb-server-sb"]
    assert target.calls[1][0] - target.calls[0][0] >= 0.09
    assert [e for _, e, _ in inj.events] == ["fault.start", "fault.end"]
    assert inj.error is None


def test_finish_continues_a_pause_cut_short() -> None:
    target = Target()
    inj = FaultPlan.parse("northd-pause:600000").injector(target, "hv2")
    inj("ready.armed")
    deadline = time.monotonic() + 5
    while not target.calls and time.monotonic() < deadline:
        time.sleep(0.001)
    inj.finish(timeout_s=0.05)  # do not wait the 10 minutes out
    assert [c for _, c in target.calls] == ["SIGSTOP ovn-northd", "SIGCONT ovn-northd"]


def test_restarts_and_the_controller_restart_name_what_they_did() -> None:
    target = Target()
    inj = FaultPlan.parse("sb-leader-kill:300").injector(target, "hv2")
    inj("ready.armed")
    inj.finish()
    assert [c for _, c in target.calls] == ["restart ovsdb-server-sb down=300 kill=True"]
    target = Target()
    inj = FaultPlan.parse("nb-leader-kill:0").injector(target, "hv2")
    inj("ready.armed")
    inj.finish()
    assert [c for _, c in target.calls] == ["restart ovsdb-server-nb2 down=0 kill=True"]
    target = Target()
    inj = FaultPlan.parse("dst-controller-restart-ready").injector(target, "hv2")
    inj("ready.wait")
    assert not inj.started
    inj("ready")
    inj.finish()
    assert [c for _, c in target.calls] == ["restart-controller hv2"]
    assert [e for _, e, _ in inj.events] == ["fault.start", "fault.old-exited", "fault.end"]


def test_a_failing_fault_is_recorded_not_raised() -> None:
    inj = FaultPlan.parse("sb-restart:10").injector(Target(fail=True), "hv2")
    inj("ready.armed")
    inj.finish()
    assert inj.error is not None and "sb-restart:10" in inj.error


def run(fault: str, strategy: str, outcome: str, blackout: float, clean: bool = True,
        error: str | None = None) -> RunResult:
    return RunResult(
        strategy=strategy, guest="emulated", stall="none", activation="rarp", load="L0",
        vm="vm1", src="hv1", dst="hv2", run_index=0, probe_interval_ms=2.0,
        probes_sent=1000, probes_lost=int(blackout / 2), blackout_ms=blackout,
        loss_outage_ms=blackout, migration_ms=300.0, ready_wait_ms=20.0, fault=fault,
        error=error,
        extra={"outcome": outcome, "reconnects": {"nb": 0, "sb": 1},
               "leftovers": {"clean": clean, "items": [] if clean else ["NB x: y"],
                             "sync_ms": 5.0}},
    )  # fmt: skip


def test_the_fault_table_counts_outcomes_and_leftovers() -> None:
    result = BenchResult(started_at="2026-11-30T00:00:00+00:00", environment={}, params={},
                         runs=[run("sb-pause:2000", "claim", "migrated", 40.0),
                               run("sb-pause:2000", "claim", "migrated", 50.0),
                               run("sb-pause:2000", "claim", "rolled-back", 10.0, clean=False,
                                   error="Leftovers: NB x: y")])  # fmt: skip
    (row,) = fault_rows(result)
    assert row[:4] == ["sb-pause:2000", "claim", "3",
                       "2 migrated, 1 rolled-back (error)"]
    assert row[4] == "45.0" and row[8] == "clean 2/3" and row[9] == "0/1"
    text = "\n".join(markdown_section(result))
    assert "## Leftovers found" in text and "NB x: y" in text
    assert RunResult.from_dict(result.runs[0].to_dict()).fault == "sb-pause:2000"


def test_no_fault_no_section() -> None:
    result = BenchResult(started_at="x", environment={}, params={},
                         runs=[run("none", "claim", "migrated", 40.0)])
    assert fault_rows(result) == [] and markdown_section(result) == []


def test_ending_a_run_ends_the_fault_even_when_the_stall_resume_fails() -> None:
    """Found by a review: a stall whose resume failed (its agent killed) raised out of the
    run and the fault's own end never ran - an sb-pause would have left the SB stopped."""
    class _Stall:
        started_ms: float | None = 1.0
        ended_ms: float | None = None

        def join(self) -> None:
            pass

        def stop(self) -> None:
            raise LabError("could not resume ovn-controller on hv2 (agent gone)")

    ended: list[str] = []
    failed = end_injections(StallInjector(_Stall(), "plug"),  # type: ignore[arg-type]
                            lambda: ended.append("fault"))
    assert ended == ["fault"]
    assert failed == ["the stall's resume: LabError: could not resume ovn-controller on hv2 "
                      "(agent gone)"]
    assert end_injections(StallInjector(None, "plug"), lambda: None) == []
