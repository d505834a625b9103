"""The migration journal and the recovery decisions, on fakes (tests/integration/
test_recovery.py kills real migrations on the real lab).

- each step's intent is committed BEFORE its effect, its completion after;
- a finished or cleanly rolled-back migration closes its record; anything else leaves it
  open (for ``cutover recover``);
- a second migration of a VM with an open record is refused, and the message says whether
  to wait (its process runs) or to recover (it is gone);
- the test kill hook really kills at the boundary, with the row already durable;
- recovery undoes every started step newest first before the switchover, redoes the
  unfinished steps after it, and decides an in-flight switchover by the destination guest.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from cutover.errors import (
    CutoverError,
    InvalidMigration,
    JournalError,
    MigrationAborted,
    RecoveryIncomplete,
    RollbackIncomplete,
    SwitchedOverIncomplete,
)
from cutover.guest.base import GuestState
from cutover.migration.clients import SiteClients
from cutover.migration.context import MigrationContext, MigrationOptions
from cutover.migration.journal import KILL_HOOK, Journal, MigrationEntry
from cutover.migration.orchestrator import run_steps
from cutover.migration.recovery import BACK, FORWARD, recover
from cutover.migration.steps import Step
from cutover.migration.strategies import build_steps
from cutover.migration.timeline import Timeline
from cutover.site import ChassisEndpoint, Site, VmSpec

SITE = Site(
    name="t", nb_remote="unix:/nb", sb_remote="unix:/sb",
    chassis=tuple(ChassisEndpoint(f"hv{i}", f"unix:/hv{i}") for i in (1, 2, 3)),
    vms=(VmSpec("vm1", "lsp1", "02:00:00:00:00:01", "10.0.0.1", "hv1", "tap1"),),
)  # fmt: skip
OPTIONS = dataclasses.asdict(MigrationOptions(strategy="claim"))


def _ctx() -> MigrationContext:
    none = cast(Any, None)
    return MigrationContext(
        site=SITE, vm=SITE.vms[0], src=SITE.chassis[0], dst=SITE.chassis[1],
        options=MigrationOptions(), binding=none, sb=none, chassis={}, hypervisor=none,
        readiness=None, timeline=Timeline(),
    )  # fmt: skip


def _begin(journal: Journal, strategy: str = "claim") -> MigrationEntry:
    return journal.begin("vm1", "lsp1", "hv1", "hv2", strategy, OPTIONS,
                         {"requested_chassis": ["hv1"]})  # fmt: skip


class Probe(Step):
    """Records what the journal said about it at the moment it acted."""

    def __init__(self, name: str, journal: Journal, seen: list[tuple[str, str]],
                 fail: BaseException | None = None, no_return: bool = False,
                 undo_fail: bool = False) -> None:
        self.name, self.journal, self.seen, self.fail = name, journal, seen, fail
        self.point_of_no_return, self.undo_fail = no_return, undo_fail

    def _state(self) -> str:
        (rec,) = self.journal.open_migrations("vm1")
        step = rec.step(self.name)
        return step.state if step else "absent"

    def do(self, ctx: MigrationContext) -> None:
        self.seen.append((f"do {self.name}", self._state()))
        if self.fail is not None:
            raise self.fail

    def undo(self, ctx: MigrationContext) -> None:
        self.seen.append((f"undo {self.name}", self._state()))
        if self.undo_fail:
            raise CutoverError("stuck")

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"what": f"{self.name} on {ctx.dst.name}"}


def test_intent_is_durable_before_the_effect_and_done_after(tmp_path: Path) -> None:
    journal = Journal.in_dir(tmp_path)
    entry = _begin(journal)
    seen: list[tuple[str, str]] = []
    run_steps(_ctx(), [Probe("a", journal, seen), Probe("b", journal, seen)], entry)
    assert seen == [("do a", "intent"), ("do b", "intent")]
    (rec,) = journal.open_migrations("vm1")
    assert [(s.name, s.state, dict(s.changes)) for s in rec.steps] == [
        ("a", "done", {"what": "a on hv2"}), ("b", "done", {"what": "b on hv2"})]
    entry.finish("completed")
    assert journal.open_migrations() == []
    last = journal.last("vm1")
    assert last is not None and last.state == "completed"


def test_a_clean_rollback_closes_the_record(tmp_path: Path) -> None:
    journal = Journal.in_dir(tmp_path)
    entry = _begin(journal)
    seen: list[tuple[str, str]] = []
    with pytest.raises(MigrationAborted):
        run_steps(_ctx(), [Probe("a", journal, seen),
                           Probe("b", journal, seen, fail=CutoverError("boom"))], entry)
    assert seen[-2:] == [("undo b", "intent"), ("undo a", "done")]
    assert journal.open_migrations() == []
    last = journal.last("vm1")
    assert last is not None and last.state == "rolled-back" and "boom" in last.detail


@pytest.mark.parametrize("case", ["undo fails", "after switchover"])
def test_an_unfinished_rollback_or_switchover_leaves_the_record_open(
    tmp_path: Path, case: str
) -> None:
    journal = Journal.in_dir(tmp_path)
    entry = _begin(journal)
    seen: list[tuple[str, str]] = []
    if case == "undo fails":
        steps = [Probe("a", journal, seen, undo_fail=True),
                 Probe("b", journal, seen, fail=CutoverError("boom"))]
        expected: type[Exception] = RollbackIncomplete
    else:
        steps = [Probe("s", journal, seen, no_return=True),
                 Probe("b", journal, seen, fail=CutoverError("boom"))]
        expected = SwitchedOverIncomplete
    with pytest.raises(expected) as info:
        run_steps(_ctx(), steps, entry)
    assert "cutover recover vm1" in str(info.value)
    (rec,) = journal.open_migrations("vm1")
    assert rec.steps[-1].name == "b" and rec.steps[-1].state == "intent"


def test_a_second_migration_of_the_vm_is_refused_while_one_is_open(tmp_path: Path) -> None:
    journal = Journal.in_dir(tmp_path)
    _begin(journal)
    with pytest.raises(InvalidMigration, match="is running; wait for it"):
        _begin(journal)
    # the owner is gone: a pid that exited (its start time no longer matches)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with sqlite3.connect(journal.path) as db:
        db.execute("UPDATE migrations SET pid = ?", (dead.pid,))
    with pytest.raises(InvalidMigration, match="run 'cutover recover vm1' first"):
        _begin(journal)
    (rec,) = journal.open_migrations()
    assert not rec.owner_alive and "(gone)" in rec.describe()
    other = journal.begin("vm2", "lsp2", "hv1", "hv3", "claim", OPTIONS, {})
    assert other.id != rec.id  # another VM is not blocked


def test_unknown_outcome_and_unwritable_journal_are_journal_errors(tmp_path: Path) -> None:
    entry = _begin(Journal.in_dir(tmp_path))
    with pytest.raises(JournalError, match="unknown outcome"):
        entry.finish("maybe")
    (tmp_path / "file").write_text("")
    with pytest.raises(JournalError):
        Journal.in_dir(tmp_path / "file")


@pytest.mark.parametrize(("hook", "state"), [("before:b", "intent"), ("after:b", "done")])
def test_the_kill_hook_kills_at_the_boundary_with_the_row_durable(
    tmp_path: Path, hook: str, state: str
) -> None:
    code = (
        "import sys; from pathlib import Path; from cutover.migration.journal import Journal\n"
        f"e = Journal.in_dir(Path({str(tmp_path)!r})).begin('vm1', 'l', 'hv1', 'hv2', 'claim',"
        " {}, {})\n"
        "e.intent(0, 'a', {}); e.done(0, 'a'); e.intent(1, 'b', {}); e.done(1, 'b')\n"
        "e.intent(2, 'c', {}); print('survived')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={KILL_HOOK: hook, "PATH": "/usr/bin"},
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == -9 and "survived" not in proc.stdout, proc.stderr
    (rec,) = Journal.in_dir(tmp_path).open_migrations()
    assert [(s.name, s.state) for s in rec.steps] == [("a", "done"), ("b", state)]
    assert not rec.owner_alive


# -- recovery on fakes ---------------------------------------------------------------------


class Recorder:
    """Fake NB, SB, chassis and hypervisor sharing one log of what recovery did."""

    def __init__(self, dst_guest: str = "incoming") -> None:
        self.log: list[str] = []
        self.dst_guest = dst_guest

    # NB
    def set_requested_chassis(self, lsp: str, chassis: list[str], activation: Any = None
                              ) -> None:  # fmt: skip
        self.log.append(f"nb requested-chassis={','.join(chassis)}")

    # SB
    def watch_binding(self, lsp: str, predicate: Any, what: str) -> Any:
        self.log.append(f"sb wait {what}")
        row = SimpleNamespace(logical_port=lsp, chassis=[SimpleNamespace(name="hv2")],
                              requested_chassis=[], additional_chassis=[],
                              requested_additional_chassis=[], up=True, options={})
        return SimpleNamespace(wait=lambda timeout: (row, 0.0), cancel=lambda: None)

    # hypervisor
    def guest_state(self, vm: VmSpec, chassis: str) -> GuestState:
        return GuestState(self.dst_guest if chassis == "hv2" else "paused")

    def abort(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        self.log.append(f"abort {vm.name}@{dst.name} (source {vm.chassis})")

    def finish_source(self, vm: VmSpec) -> None:
        self.log.append(f"stop {vm.name}@{vm.chassis}")


class FakeChassis:
    def __init__(self, name: str, rec: Recorder) -> None:
        self.name, self.rec = name, rec

    def unplug(self, vif: Any) -> None:
        self.rec.log.append(f"unplug {vif.tap}@{self.name}")

    def forget(self, lsp: str, tap: str | None = None) -> list[str]:
        self.rec.log.append(f"forget {lsp}@{self.name}" + (f" with {tap}" if tap else ""))
        return []

    def resume_controller(self) -> None:
        self.rec.log.append(f"resume {self.name}")


def _clients(rec: Recorder) -> SiteClients:
    chassis = {c.name: cast(Any, FakeChassis(c.name, rec)) for c in SITE.chassis}
    return SiteClients(nb=cast(Any, rec), sb=cast(Any, rec), chassis=chassis)


def _crashed(journal: Journal, upto: str, state: str, extra: dict[str, Any] | None = None
             ) -> None:  # fmt: skip
    """A record as a migration killed at ``upto`` (in ``state``) leaves it."""
    entry = journal.begin("vm1", "lsp1", "hv1", "hv2", "claim", OPTIONS,
                          {"requested_chassis": ["hv1"]}, extra)  # fmt: skip
    for seq, step in enumerate(build_steps("claim")):
        entry.intent(seq, step.name, {})
        if step.name == upto:
            if state == "done":
                entry.done(seq, step.name)
            break
        entry.done(seq, step.name)
    with sqlite3.connect(journal.path) as db:  # its process is gone
        db.execute("UPDATE migrations SET pid_start = 'gone'")


def test_before_the_switchover_every_started_step_is_undone_newest_first(
    tmp_path: Path
) -> None:
    journal, rec = Journal.in_dir(tmp_path), Recorder()
    _crashed(journal, "wait-ready", "intent", {"stall": {"chassis": "hv2", "ms": 8000}})
    (report,) = recover(SITE, journal, cast(Any, rec), _clients(rec))
    assert report.direction == BACK and report.runs_on == "hv1"
    assert rec.log == [
        "nb requested-chassis=hv1",            # prepare-network
        "abort vm1@hv2 (source hv1)",          # start-incoming
        "unplug tap1@hv2",                     # plug-destination
        "forget lsp1@hv1", "forget lsp1@hv2 with tap1", "forget lsp1@hv3",
        "resume hv2",                          # the stall the record names
        "sb wait hv1 to be the only chassis",
    ]  # fmt: skip
    assert journal.open_migrations() == []
    last = journal.last("vm1")
    assert last is not None and last.state == "recovered-back"
    assert {s.state for s in last.steps} == {"undone"}


def test_after_the_switchover_the_unfinished_steps_are_redone(tmp_path: Path) -> None:
    journal, rec = Journal.in_dir(tmp_path), Recorder(dst_guest="running")
    _crashed(journal, "cleanup-source", "intent")
    (report,) = recover(SITE, journal, cast(Any, rec), _clients(rec))
    assert report.direction == FORWARD and report.runs_on == "hv2"
    assert rec.log == [
        "stop vm1@hv1", "unplug tap1@hv1",     # cleanup-source again (activate was done)
        "forget lsp1@hv1 with tap1", "forget lsp1@hv2", "forget lsp1@hv3",
        "sb wait hv2 to be the only chassis",
    ]  # fmt: skip
    last = journal.last("vm1")
    assert last is not None and last.state == "recovered-forward"


@pytest.mark.parametrize(("dst_guest", "direction"), [("running", FORWARD),
                                                      ("incoming", BACK)])
def test_a_switchover_in_flight_is_decided_by_the_destination_guest(
    tmp_path: Path, dst_guest: str, direction: str
) -> None:
    journal, rec = Journal.in_dir(tmp_path), Recorder(dst_guest)
    _crashed(journal, "switchover", "intent")
    (report,) = recover(SITE, journal, cast(Any, rec), _clients(rec))
    assert report.direction == direction
    assert ("nb requested-chassis=hv2" in rec.log) == (direction == FORWARD)  # activate


def test_a_failed_recovery_keeps_the_record_open(tmp_path: Path) -> None:
    journal, rec = Journal.in_dir(tmp_path), Recorder()
    _crashed(journal, "prepare-network", "done")
    clients = _clients(rec)

    def refuse(lsp: str, tap: str | None = None) -> list[str]:
        raise CutoverError("agent of hv2 did not answer")

    clients.chassis["hv2"].forget = refuse  # type: ignore[method-assign]
    with pytest.raises(RecoveryIncomplete, match=r"hv2: could not forget lsp1.*recover vm1"):
        recover(SITE, journal, cast(Any, rec), clients)
    assert len(journal.open_migrations("vm1")) == 1


def test_a_migration_whose_process_runs_is_not_recovered(tmp_path: Path) -> None:
    journal, rec = Journal.in_dir(tmp_path), Recorder()
    _begin(journal)
    with pytest.raises(InvalidMigration, match="is running right now"):
        recover(SITE, journal, cast(Any, rec), _clients(rec))
    assert rec.log == []
