"""ControllerStall's timing and idempotence, with the unixctl call replaced by a recorder."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from cutover.chassis import unixctl
from cutover.errors import InputError, LabError
from cutover.lab.stall import ControllerStall


class FakeAppctl:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []
        self.fail: set[str] = set()

    def __call__(
        self, ctl_path: str, cmd: str, params: Sequence[str] | None = None,
        timeout: float = 10.0,
    ) -> str:
        assert ctl_path == "/lab/hv2/ovn-controller.ctl"
        if cmd in self.fail:
            raise LabError(f"unixctl {cmd} failed")
        self.calls.append((time.monotonic(), cmd))
        return ""


@pytest.fixture
def appctl(monkeypatch: pytest.MonkeyPatch) -> FakeAppctl:
    fake = FakeAppctl()
    monkeypatch.setattr(unixctl, "call", fake)
    return fake


def test_timed_resume(appctl: FakeAppctl) -> None:
    s = ControllerStall("/lab/hv2/ovn-controller.ctl", 50)
    s.start()
    assert s.paused
    s.join(timeout=2)
    assert s.wait(timeout=0)
    assert [c for _, c in appctl.calls] == ["debug/pause", "debug/resume"]
    assert appctl.calls[1][0] - appctl.calls[0][0] >= 0.045
    assert s.started_ms is not None and s.ended_ms is not None
    assert s.ended_ms - s.started_ms >= 45
    s.stop()  # already resumed: no second resume
    assert len(appctl.calls) == 2


def test_stop_resumes_early_and_is_idempotent(appctl: FakeAppctl) -> None:
    s = ControllerStall("/lab/hv2/ovn-controller.ctl", 10_000)
    with s:
        assert s.paused
    assert not s.paused
    s.stop()
    s.stop()
    assert [c for _, c in appctl.calls] == ["debug/pause", "debug/resume"]
    assert s.ended_ms is not None and s.started_ms is not None
    assert s.ended_ms - s.started_ms < 5_000


def test_stop_without_start_is_safe(appctl: FakeAppctl) -> None:
    ControllerStall("/lab/hv2/ovn-controller.ctl", 100).stop()
    assert appctl.calls == []


def test_failed_pause_raises_and_leaves_nothing_armed(appctl: FakeAppctl) -> None:
    appctl.fail.add("debug/pause")
    s = ControllerStall("/lab/hv2/ovn-controller.ctl", 10)
    with pytest.raises(LabError, match="could not pause"):
        s.start()
    assert not s.paused
    s.stop()
    assert appctl.calls == []


def test_failed_resume_tells_how_to_resume_by_hand(appctl: FakeAppctl) -> None:
    s = ControllerStall("/lab/hv2/ovn-controller.ctl", 10_000)
    s.start()
    appctl.fail.add("debug/resume")
    with pytest.raises(LabError, match="debug/resume"):
        s.stop()
    appctl.fail.clear()
    s.stop()
    assert not s.paused


def test_start_twice_is_refused(appctl: FakeAppctl) -> None:
    s = ControllerStall("/lab/hv2/ovn-controller.ctl", 10_000)
    s.start()
    try:
        with pytest.raises(LabError, match="already started"):
            s.start()
    finally:
        s.stop()


def test_bad_duration() -> None:
    with pytest.raises(InputError):
        ControllerStall("/x", 0)
