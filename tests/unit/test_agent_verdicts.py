"""The agent's verdict hand-off (agent/service.py): API subscribers hear it before the SB
write, a late subscriber hears it at once, and a cancel is never overtaken by the
verdict's SB write (the key a cancel withdrew is not written again). A stand-in SB
records the writes; the watch is a stub whose wait the test releases."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cutover.agent.service import NodeService, NotWatched
from cutover.chassis.published import decode, port_ready_key
from cutover.errors import InputError
from cutover.evidence import Evidence

RID = "12345678-1234-1234-1234-123456789012"
KEY = port_ready_key("ls-vm1")


class _Sb:
    def __init__(self, log: list[tuple[str, ...]]) -> None:
        self.log = log

    def publish(self, chassis: str, key: str, value: str) -> None:
        self.log.append(("sb-write", key))

    def unpublish(self, chassis: str, key: str) -> None:
        self.log.append(("sb-remove", key))


class _Watch:
    """A readiness wait that ends when the test says so."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.interrupted: BaseException | None = None

    def wait(self, timeout_s: float) -> Evidence:
        self.go.wait(10)
        if self.interrupted is not None:
            raise self.interrupted
        return Evidence("port-ready", 1.0, "flows complete")

    def interrupt(self, cause: BaseException) -> None:
        self.interrupted = cause
        self.go.set()

    def cancel(self) -> None:
        pass

    def describe(self) -> str:
        return "waiting"


def service(log: list[tuple[str, ...]]) -> NodeService:
    s = NodeService.__new__(NodeService)  # no node: only the verdict bookkeeping
    s.chassis_name = "hv2"
    s._sb = _Sb(log)  # type: ignore[assignment]
    s._jobs = {}
    s._lock = threading.Lock()
    s._starting = {}
    return s


def start(s: NodeService, watch: _Watch, log: list[tuple[str, ...]]) -> None:
    """Arm the watch; its start withdraws any earlier verdict, which the log forgets."""
    s._start("port", "ls-vm1", KEY, RID, 30.0, lambda: watch)
    assert log == [("sb-remove", KEY)]
    log.clear()


def test_subscribers_hear_the_verdict_before_the_sb_write() -> None:
    log: list[tuple[str, ...]] = []
    s, watch = service(log), _Watch()
    start(s, watch, log)
    heard: list[Any] = []
    s.subscribe_verdict("port", "ls-vm1", RID, lambda st, v: log.append(("api", st)))
    watch.go.set()
    s._jobs[("port", "ls-vm1")].thread.join(5)  # type: ignore[union-attr]
    assert log[-2:] == [("api", "ready"), ("sb-write", KEY)]
    # a late subscriber gets the same value at once
    s.subscribe_verdict("port", "ls-vm1", RID, lambda st, v: heard.append((st, decode(v))))
    assert heard[0][0] == "ready" and heard[0][1].request_id == RID
    with pytest.raises(NotWatched, match="its current watch is " + RID):
        s.subscribe_verdict("port", "ls-vm1", RID.replace("1234", "9999", 1), print)


def test_a_cancel_is_never_overtaken_by_the_sb_write() -> None:
    log: list[tuple[str, ...]] = []
    s, watch = service(log), _Watch()
    start(s, watch, log)
    heard: list[str] = []
    s.subscribe_verdict("port", "ls-vm1", RID, lambda st, v: heard.append(st))
    job = s._jobs[("port", "ls-vm1")]
    s.cancel_watch("port", "ls-vm1")
    job.thread.join(5)  # type: ignore[union-attr]
    assert heard == ["cancelled"]
    assert log == [("sb-remove", KEY)]  # withdrawn, and never written afterwards
    # the verdict arriving after the cancel (the wait raced it) is dropped too
    assert s._settle(job, "ready", "late", "{}") is False


def test_a_failed_wait_is_delivered_as_failed() -> None:
    log: list[tuple[str, ...]] = []
    s, watch = service(log), _Watch()
    start(s, watch, log)
    heard: list[tuple[str, str]] = []
    s.subscribe_verdict("port", "ls-vm1", RID, lambda st, v: heard.append((st, v)))
    watch.interrupted = InputError("the flows never came")
    watch.go.set()
    s._jobs[("port", "ls-vm1")].thread.join(5)  # type: ignore[union-attr]
    assert heard[0][0] == "failed"
    verdict = decode(heard[0][1])
    assert verdict is not None and verdict.evidence is None
    assert "the flows never came" in (verdict.error or "")
    assert log == [("sb-write", KEY)]


def test_concurrent_starts_for_one_port_leave_one_watch() -> None:
    """Found: six concurrent PUTs of a port-readiness watch, then one DELETE: a watch the
    DELETE never saw timed out later and wrote its verdict to the SB, where it stayed.
    A start replaces the earlier watch as one step; every replaced watch is cancelled."""
    log: list[tuple[str, ...]] = []
    s = service(log)
    first, second = _Watch(), _Watch()
    arming, release = threading.Event(), threading.Event()

    def slow_arm() -> _Watch:
        arming.set()
        release.wait(10)
        return first

    a = threading.Thread(target=s._start, args=("port", "ls-vm1", KEY, RID, 30.0, slow_arm))
    a.start()
    assert arming.wait(5)
    b = threading.Thread(target=s._start, args=("port", "ls-vm1", KEY,
                                                RID.replace("1234", "9999", 1), 30.0,
                                                lambda: second))  # fmt: skip
    b.start()
    b.join(0.5)  # unserialised, b registers its watch now, before a does
    release.set()
    a.join(5)
    b.join(5)
    current = s._jobs[("port", "ls-vm1")].watch
    replaced = second if current is first else first
    assert replaced.interrupted is not None, "a replaced watch runs on, never cancelled"
    s.cancel_watch("port", "ls-vm1")
    for w in (first, second):
        w.go.set()


def test_a_cancel_for_another_request_touches_nothing() -> None:
    """The orchestrator withdraws a verdict from a thread, after the verdict: landing late,
    it must not stop a newer watch of the same port (nor withdraw that watch's key)."""
    log: list[tuple[str, ...]] = []
    s, watch = service(log), _Watch()
    start(s, watch, log)
    older = RID.replace("1234", "9999", 1)
    with pytest.raises(NotWatched, match="it holds " + RID):
        s.cancel_watch("port", "ls-vm1", request_id=older)
    assert log == [] and ("port", "ls-vm1") in s._jobs and watch.interrupted is None
    s.cancel_watch("port", "ls-vm1", request_id=RID)
    assert log == [("sb-remove", KEY)] and ("port", "ls-vm1") not in s._jobs
    with pytest.raises(NotWatched):  # gone now: a repeat changes nothing either
        s.cancel_watch("port", "ls-vm1", request_id=RID)
    assert log == [("sb-remove", KEY)]


class _EarlyWatch(_Watch):
    """A wait whose verdict is made by another thread (an input's) before it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.deliver: Any = None

    def on_verdict(self, deliver: Any) -> None:
        self.deliver = deliver


def test_an_early_verdict_reaches_subscribers_before_the_wait_returns() -> None:
    """LocalPortWatch.on_verdict: the thread that made the verdict hands it to the API
    subscribers; the job's thread, once its wait returns, writes the same value to the SB."""
    log: list[tuple[str, ...]] = []
    s, watch = service(log), _EarlyWatch()
    start(s, watch, log)
    values: list[str] = []
    s.subscribe_verdict("port", "ls-vm1", RID, lambda st, v: values.append(v))
    assert watch.deliver is not None, "the agent did not ask for the early verdict"
    watch.deliver(Evidence("port-ready", 1.0, "flows complete"))
    assert len(values) == 1 and log == [], "delivered early, and not yet written to the SB"
    watch.go.set()  # the wait returns (its own Evidence object, made later)
    s._jobs[("port", "ls-vm1")].thread.join(5)  # type: ignore[union-attr]
    assert log == [("sb-write", KEY)] and len(values) == 1
    job = s._jobs[("port", "ls-vm1")]
    assert job.value == values[0], "the SB must get the value the API subscribers got"


def test_a_cancel_after_an_early_verdict_keeps_the_sb_clean() -> None:
    log: list[tuple[str, ...]] = []
    s, watch = service(log), _EarlyWatch()
    start(s, watch, log)
    watch.deliver(Evidence("port-ready", 1.0, "flows complete"))
    job = s._jobs[("port", "ls-vm1")]
    s.cancel_watch("port", "ls-vm1")
    job.thread.join(5)  # type: ignore[union-attr]
    assert log == [("sb-remove", KEY)], "a cancelled verdict was written to the SB"
