"""After a rollback the error says what is true about the VM's guest on its source.

A fake hypervisor answers ``guest_state``; the steps are fakes (the real kill of a source
guest during the copy is tests/integration/test_dead_guest.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest

from cutover.errors import CutoverError, MigrationAborted
from cutover.guest.base import GuestState
from cutover.guest.inventory import GuestRecord
from cutover.lab.lab import LabStatus
from cutover.migration.context import MigrationContext, MigrationOptions
from cutover.migration.orchestrator import run_steps
from cutover.migration.steps import Step
from cutover.migration.timeline import Timeline
from cutover.site import ChassisEndpoint, Site, VmSpec

SITE = Site(
    name="t",
    nb_remote="unix:/nb",
    sb_remote="unix:/sb",
    chassis=tuple(ChassisEndpoint(f"hv{i}", f"unix:/hv{i}") for i in (1, 2, 3)),
    vms=(VmSpec("vm1", "lsp1", "02:00:00:00:00:01", "10.0.0.1", "hv1", "tap1"),),
)


class Failing(Step):
    name = "copy-memory"

    def do(self, ctx: MigrationContext) -> None:
        raise CutoverError("the source guest vm1@hv1 (pid 42) died: killed by SIGKILL")


class FakeHypervisor:
    def __init__(self, state: GuestState | Exception) -> None:
        self.state = state
        self.asked: list[tuple[str, str]] = []

    def guest_state(self, vm: VmSpec, chassis: str) -> GuestState:
        self.asked.append((vm.name, chassis))
        if isinstance(self.state, Exception):
            raise self.state
        return self.state


def _abort(hv: FakeHypervisor) -> MigrationAborted:
    ctx = MigrationContext(
        site=SITE, vm=SITE.vms[0], src=SITE.chassis[0], dst=SITE.chassis[1],
        options=MigrationOptions(), binding=cast(Any, None), sb=cast(Any, None),
        chassis={}, hypervisor=cast(Any, hv), readiness=None, timeline=Timeline(),
    )
    with pytest.raises(MigrationAborted) as info:
        run_steps(ctx, [Failing()])
    assert hv.asked == [("vm1", "hv1")]  # asked about the source, after the rollback
    return info.value


def test_a_dead_source_guest_is_named_with_the_remedy() -> None:
    err = _abort(FakeHypervisor(GuestState("dead", "pid 42 in /x/vm1@hv1.pid is gone")))
    text = str(err)
    assert text.startswith("migration of 'vm1' aborted in step 'copy-memory' and rolled back; ")
    assert "the VM's guest on hv1 is NOT running (dead: pid 42 in /x/vm1@hv1.pid is gone)" in text
    assert "its port stays bound to hv1: restart the guest there" in text
    assert "cutover lab restart-guests" in text
    assert "still runs" not in text
    assert "killed by SIGKILL" in text  # the cause stays in the message
    assert (err.vm, err.step, err.src, err.guest_state) == ("vm1", "copy-memory", "hv1", "dead")
    assert err.guest_running is False and isinstance(err.cause, CutoverError)


def test_a_running_source_guest_is_reported_as_running() -> None:
    err = _abort(FakeHypervisor(GuestState("running", "pid 42")))
    assert "(the VM still runs on hv1, its port bound there)" in str(err)
    assert "NOT running" not in str(err) and err.guest_running is True


def test_a_paused_source_guest_is_not_called_running() -> None:
    err = _abort(FakeHypervisor(GuestState("paused", "pid 42")))
    assert "the VM's guest on hv1 is NOT running (paused: pid 42)" in str(err)


def test_a_hypervisor_that_cannot_tell_does_not_hide_the_cause() -> None:
    err = _abort(FakeHypervisor(RuntimeError("socket gone")))
    text = str(err)
    assert "whether the VM's guest on hv1 still runs is unknown" in text
    assert "RuntimeError: socket gone" in text and "killed by SIGKILL" in text
    assert "NOT running" not in text and "still runs on" not in text
    assert err.guest_state == "unknown" and err.guest_running is False


def test_without_a_state_the_message_claims_nothing() -> None:
    err = MigrationAborted("vm1", "wait-ready", CutoverError("x"))
    assert "was not checked" in str(err) and err.guest_running is None


def test_lab_status_is_degraded_by_a_dead_guest() -> None:
    from pathlib import Path

    dead = GuestRecord("vm1", "hv1", "vm", "dead", 42)
    ok = GuestRecord("vm2", "hv2", "vm", "running", 43)
    st = LabStatus(state="up", prefix="og1", lab_dir=Path("/tmp/x"), guests=(dead, ok))
    text = st.describe()
    first = text.splitlines()[0]
    assert first.startswith("lab og1 is up, degraded: guest vm1@hv1 dead (pid 42)")
    assert "vm2@hv2" not in first
    assert "  guest: vm2@hv2 running (pid 43)" in text
    assert "cutover --prefix og1 lab restart-guests" in text
    healthy = LabStatus(state="up", prefix="og1", lab_dir=Path("/tmp/x"), guests=(ok,))
    assert healthy.describe().startswith("lab og1 is up (/tmp/x)") and healthy.degraded == ()


def test_lab_status_never_hints_a_second_guest_of_a_vm_that_runs_elsewhere() -> None:
    """vm1 moved to hv2 outside the lab's record (migrate --config): restart-guests would
    start a second vm1 on hv1; the hint is recover, which records where it runs."""
    from pathlib import Path

    missing = GuestRecord("vm1", "hv1", "vm", "missing", None)
    there = GuestRecord("vm1", "hv2", "stray", "running", 44)
    moved = LabStatus(state="up", prefix="og1", lab_dir=Path("/tmp/x"),
                      guests=(missing, there))
    text = moved.describe()
    assert "restart-guests" not in text
    assert "run 'cutover --prefix og1 recover' to record where vm1 runs" in text
    # a crash mid-migration: the source guest runs, the incoming one is stray
    crashed = LabStatus(state="up", prefix="og1", lab_dir=Path("/tmp/x"),
                        guests=(GuestRecord("vm1", "hv1", "vm", "running", 43), there),
                        unfinished=("migration #1 of vm1 hv1 -> hv2 (claim)",))
    text = crashed.describe()
    assert "restart-guests" not in text and "to roll back or complete" in text
    # a migration running right now: its incoming guest is no reason to recover
    running = dataclasses.replace(crashed, unfinished=(), migrating=("migration #2",))
    assert "recover" not in running.describe()
