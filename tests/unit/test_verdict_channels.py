"""A readiness verdict reaches the orchestrator by the agent's long poll or by the SB,
whichever comes first (docs/readiness.md, "Two channels"); ``CUTOVER_VERDICT_CHANNEL=sb``
leaves the SB alone. No agent runs: httpx MockTransport, and a stand-in for the SB
watch that fires only when the test says so."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cutover.chassis.agent_client import CHANNEL_ENV, AgentChassis
from cutover.chassis.base import Vif
from cutover.chassis.published import encode_ready
from cutover.errors import InputError
from cutover.evidence import Evidence
from cutover.site import ChassisEndpoint

VIF = Vif("ls-vm1", "tapvm1", "02:00:00:00:00:01", "")


class _SbWatch:
    def __init__(self, predicate: Callable[[str], bool]) -> None:
        self.predicate = predicate
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Sb:
    """The one SbClient call a PublishedWatch makes."""

    def __init__(self) -> None:
        self.watches: list[_SbWatch] = []

    def watch_published(self, chassis: str, key: str, predicate: Callable[[str], bool],
                        what: str) -> _SbWatch:  # fmt: skip
        w = _SbWatch(predicate)
        self.watches.append(w)
        return w


def ready_value(request_id: str) -> str:
    return encode_ready(request_id, Evidence("port-ready", 1000.0, "flows complete"))


def ready_now(request: httpx.Request) -> httpx.Response:
    """The agent's long poll, answered with a ready verdict of the asked request id."""
    rid = request.url.params["request_id"]
    return httpx.Response(200, json={"lsp": "ls-vm1", "request_id": rid,
                                     "state": "ready", "value": ready_value(rid)})


def agent(tmp_path: Path, verdict: Callable[[httpx.Request], httpx.Response]
          ) -> tuple[AgentChassis, _Sb, list[str]]:  # fmt: skip
    """An AgentChassis whose agent accepts the watch and answers the long poll with
    ``verdict``; the list records each request's method and path."""
    token = tmp_path / "token"
    token.write_text("t" * 32)
    seen: list[str] = []
    sb = _Sb()
    c = AgentChassis(ChassisEndpoint("hv2", "", agent="unix:/run/agent.sock",
                                     agent_token_file=str(token)), sb)  # type: ignore[arg-type]

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path.endswith("/verdict"):
            return verdict(request)
        return httpx.Response(202 if request.method == "PUT" else 200,
                              json={"lsp": "ls-vm1", "state": "waiting", "detail": ""})

    transport = httpx.MockTransport(handle)
    c._http = httpx.Client(base_url="http://agent", transport=transport)
    c.long_poll_client = lambda: httpx.Client(  # type: ignore[method-assign]
        base_url="http://agent", transport=transport)
    return c, sb, seen


def test_the_long_poll_brings_the_verdict_when_the_sb_is_slow(tmp_path: Path) -> None:
    c, sb, seen = agent(tmp_path, ready_now)
    evidence = c.watch_port(VIF).wait(5.0)  # the SB watch never fires
    assert evidence.detail.endswith("by the agent's API")
    assert "GET /v1/port-readiness/ls-vm1/verdict" in seen
    assert c.finish_pending() == []  # the withdrawal runs in the background
    assert seen[-1] == "DELETE /v1/port-readiness/ls-vm1"  # withdrawn after the verdict
    assert sb.watches[0].cancelled


def test_a_verdict_of_another_request_is_ignored(tmp_path: Path) -> None:
    answers: list[Any] = []

    def verdict(request: httpx.Request) -> httpx.Response:
        answers.append(request)
        return httpx.Response(200, json={"lsp": "ls-vm1", "request_id": "x",
                                         "state": "ready", "value": ready_value("other")})

    c, sb, _ = agent(tmp_path, verdict)
    watch = c.watch_port(VIF)
    rid = watch._request_id
    assert sb.watches[0].predicate(ready_value("other")) is False
    assert sb.watches[0].predicate(ready_value(rid)) is True  # the SB brings it
    assert watch.wait(5.0).detail.endswith("by the SB")


def test_sb_only_makes_no_long_poll(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHANNEL_ENV, "sb")

    def verdict(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no long poll with CUTOVER_VERDICT_CHANNEL=sb")

    c, sb, seen = agent(tmp_path, verdict)
    watch = c.watch_port(VIF)
    sb.watches[0].predicate(ready_value(watch._request_id))
    assert watch.wait(5.0).detail.endswith("by the SB")
    assert not any(s.endswith("/verdict") for s in seen)


def test_a_failed_long_poll_leaves_the_sb_and_says_so(tmp_path: Path) -> None:
    c, sb, _ = agent(tmp_path, lambda r: httpx.Response(404, json={"error": {
        "type": "HTTPError", "message": "Not Found"}}))  # an agent without the route
    watch = c.watch_port(VIF)
    deadline = time.monotonic() + 5
    while not watch._poll_error and time.monotonic() < deadline:
        time.sleep(0.01)  # the poll runs in its own thread
    assert "HTTP 404" in watch.describe() and "the SB alone counts" in watch.describe()
    sb.watches[0].predicate(ready_value(watch._request_id))
    assert watch.wait(5.0).detail.endswith("by the SB")


def test_an_unknown_channel_setting_is_refused(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHANNEL_ENV, "api")
    with pytest.raises(InputError, match="CUTOVER_VERDICT_CHANNEL='api': use first"):
        agent(tmp_path, lambda r: httpx.Response(500))


def test_the_channel_setting_does_not_concern_a_seam_without_verdicts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: ``lab up`` (whose agents plug the lab's ports through an AgentChassis that
    waits for no verdict) failed with a bad CUTOVER_VERDICT_CHANNEL after building the
    lab; only a chassis given the SB to wait on checks it."""
    monkeypatch.setenv(CHANNEL_ENV, "api")
    token = tmp_path / "token"
    token.write_text("t" * 32)
    AgentChassis(ChassisEndpoint("hv2", "", agent="unix:/run/agent.sock",
                                 agent_token_file=str(token)))


def test_a_withdrawal_that_fails_is_reported_by_finish_pending(tmp_path: Path) -> None:
    c, _, _ = agent(tmp_path, ready_now)
    watch = c.watch_port(VIF)
    c._http = httpx.Client(base_url="http://agent", transport=httpx.MockTransport(
        lambda r: httpx.Response(503, json={"error": {"type": "OvsdbError",
                                                      "message": "SB down"}})))
    watch.wait(5.0)
    failed = c.finish_pending()
    assert len(failed) == 1 and "DELETE /v1/port-readiness/ls-vm1" in failed[0]
    assert "SB down" in failed[0]
    assert c.finish_pending() == []  # reported once
