"""The agent's HTTP API against a recording fake of the node service (no node is touched).

- every request without the right bearer token is a 401 and reaches nothing;
- malformed requests are 4xx and reach nothing;
- a property-based contract test (schemathesis, from the agent's own OpenAPI description)
  finds no 5xx, no response that breaks the schema, and no 4xx that changed anything.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from cutover.agent.app import make_app, status_for
from cutover.agent.service import FaultsDisabled, NotWatched
from cutover.chassis.base import ControllerWatch, PathTarget, TapGateState
from cutover.errors import ChassisUnreachable, ControllerDown, InputError, PlugError

TOKEN = "t" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RID = "12345678-1234-1234-1234-123456789012"
WATCH = {"tap": "tapvm1", "mac": "02:00:00:00:00:01", "request_id": RID, "timeout_s": 30}
"""A port-readiness (or port-open) watch request."""
VIF = {"lsp": "ls-vm1", "mac": "02:00:00:00:00:01",
       "vm_uuid": "12345678-1234-1234-1234-123456789012", "mtu": 1442}  # fmt: skip


class _Stopped:
    def stop(self) -> None:
        pass


class FakeService:
    """Records every call that would change the node."""

    chassis_name = "hv2"
    faults_enabled = False

    def __init__(self, instant: bool = True) -> None:
        """``instant``: a verdict long poll is answered at once (ready), as the contract
        test needs; else only when :meth:`settle` is called."""
        self.changes: list[tuple[Any, ...]] = []
        self.watches: dict[tuple[str, str], str] = {}
        self.instant = instant
        self.subscribers: list[Callable[[str, str], None]] = []
        self.request_ids: dict[tuple[str, str], str] = {}
        self.gates: set[str] = set()

    def plug(self, tap: str, lsp: str, mac: str, vm_uuid: str, mtu: int) -> None:
        self.changes.append(("plug", tap, lsp))

    def unplug(self, tap: str) -> None:
        self.changes.append(("unplug", tap))

    def vif_state(self, tap: str) -> dict[str, str] | None:
        return {"iface-id": "ls-vm1"} if tap == "tapvm1" else None

    def close_tap_gate(self, tap: str) -> None:
        if tap != "tapvm1":
            raise PlugError(f"{tap} is not plugged on hv2")
        self.gates.add(tap)
        self.changes.append(("close_gate", tap))

    def open_tap_gate(self, tap: str) -> TapGateState:
        if tap not in self.gates:
            return TapGateState(closed=False)
        self.gates.discard(tap)
        self.changes.append(("open_gate", tap))
        return TapGateState(closed=True, dropped=7)

    def tap_gate(self, tap: str) -> TapGateState:
        return TapGateState(closed=tap in self.gates, dropped=7 if tap in self.gates else 0)

    def watch_port(self, lsp: str, tap: str, mac: str, request_id: str, timeout_s: float,
                   use_ovn_installed: bool) -> None:
        self.changes.append(("watch_port", lsp, mac))
        self.watches[("port", lsp)] = "waiting"
        self.request_ids[("port", lsp)] = request_id

    def watch_open(self, lsp: str, tap: str, mac: str, request_id: str,
                   timeout_s: float) -> None:
        self.changes.append(("watch_open", lsp, mac))
        self.watches[("open", lsp)] = "waiting"
        self.request_ids[("open", lsp)] = request_id

    def watch_path(self, lsp: str, request_id: str, target: PathTarget,
                   timeout_s: float) -> None:
        self.changes.append(("watch_path", lsp))
        self.watches[("path", lsp)] = "waiting"
        self.request_ids[("path", lsp)] = request_id

    def watch_state(self, kind: str, lsp: str) -> tuple[str, str]:
        if (kind, lsp) not in self.watches:
            raise NotWatched(f"no {kind} watch for {lsp}")
        return self.watches[(kind, lsp)], ""

    def subscribe_verdict(self, kind: str, lsp: str, request_id: str,
                          deliver: Callable[[str, str], None]) -> Callable[[], None]:
        if (kind, lsp) not in self.watches or self.request_ids[(kind, lsp)] != request_id:
            raise NotWatched(f"no {kind} watch {request_id} for {lsp}")
        if self.instant:
            deliver("ready", json.dumps({"id": request_id}))
        else:
            self.subscribers.append(deliver)
        return lambda: self.subscribers.remove(deliver) if deliver in self.subscribers else None

    def settle(self, state: str, value: str) -> None:
        for deliver in self.subscribers:
            deliver(state, value)

    def cancel_watch(self, kind: str, lsp: str, missing_ok: bool = False,
                     request_id: str | None = None) -> None:
        if request_id is not None and self.request_ids.get((kind, lsp)) != request_id:
            raise NotWatched(f"no {kind} watch {request_id} for {lsp}")
        if self.watches.pop((kind, lsp), None) is None:
            raise NotWatched(f"no {kind} watch for {lsp}")
        self.changes.append(("cancel", kind, lsp))

    def controller_alive(self) -> tuple[bool, str]:
        return True, "answers"

    def watch_controller(self, on_death: Callable[[ControllerDown], None]) -> ControllerWatch:
        on_death(ControllerDown("hv2", "local", "test"))  # the stream ends at once
        return _Stopped()

    def pause_controller(self, resume_after_ms: float | None = None) -> None:
        raise FaultsDisabled("faults are off")

    def resume_controller(self) -> None:
        raise FaultsDisabled("faults are off")

    def forget(self, lsp: str, tap: str | None) -> list[str]:
        self.changes.append(("forget", lsp, tap))
        return [f"TAP and OVS port {tap}"] if tap else []


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def client(service: FakeService) -> TestClient:
    return TestClient(make_app(service, TOKEN))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": TOKEN}, {"Authorization": "Basic x"}])
@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/health", None), ("PUT", "/v1/vifs/tapvm1", VIF),
    ("DELETE", "/v1/vifs/tapvm1", None), ("GET", "/v1/openapi.json", None),
    ("POST", "/v1/controller/pause", None), ("PUT", "/v1/tap-gate/tapvm1", None),
    ("DELETE", "/v1/tap-gate/tapvm1", None),
])  # fmt: skip
def test_unauthenticated_requests_are_refused_and_change_nothing(
    client: TestClient, service: FakeService, headers: dict[str, str], method: str,
    path: str, body: dict[str, Any] | None,
) -> None:
    r = client.request(method, path, json=body, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "Unauthorized"
    assert service.changes == []


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/vifs/tapvm1", {**VIF, "mac": "not-a-mac"}),
    ("/v1/vifs/tapvm1", {**VIF, "mtu": 100000}),
    ("/v1/vifs/tapvm1", {**VIF, "extra": 1}),
    ("/v1/vifs/tapvm1", {k: v for k, v in VIF.items() if k != "lsp"}),
    ("/v1/vifs/a-name-longer-than-15", VIF),
    ("/v1/vifs/tap;rm", VIF),
    ("/v1/port-readiness/ls-vm1", {"tap": "tapvm1", "mac": "02:00:00:00:00:01",
                                   "request_id": "x", "timeout_s": 1}),
    ("/v1/port-readiness/ls-vm1", {"tap": "tapvm1", "mac": "02:00:00:00:00:01",
                                   "request_id": "12345678-1234-1234-1234-123456789012",
                                   "timeout_s": 0}),
    # the MAC is required (the port's L2 lookup is part of the check) and must be one
    ("/v1/port-readiness/ls-vm1", {"tap": "tapvm1",
                                   "request_id": "12345678-1234-1234-1234-123456789012",
                                   "timeout_s": 5}),
    ("/v1/port-readiness/ls-vm1", {"tap": "tapvm1", "mac": "02:00:00:00:00",
                                   "request_id": "12345678-1234-1234-1234-123456789012",
                                   "timeout_s": 5}),
    ("/v1/path-readiness/ls-vm1", {"request_id": "12345678-1234-1234-1234-123456789012",
                                   "port_key": 1, "datapath_key": 1, "dst": "hv2",
                                   "dst_ips": ["300.1.1.1"], "timeout_s": 5}),
])  # fmt: skip
def test_malformed_requests_are_4xx_and_change_nothing(
    client: TestClient, service: FakeService, path: str, body: dict[str, Any]
) -> None:
    r = client.put(path, json=body, headers=AUTH)
    assert 400 <= r.status_code < 500, r.text
    assert service.changes == []


def test_a_422_is_in_the_apis_error_format_and_names_the_field(client: TestClient) -> None:
    r = client.put("/v1/vifs/tapvm1", json={**VIF, "mtu": 100000}, headers=AUTH)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["type"] == "ValidationError" and "body.mtu" in err["message"]
    described = client.get("/v1/openapi.json", headers=AUTH).json()
    put = described["paths"]["/v1/vifs/{tap}"]["put"]["responses"]["422"]
    assert put["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")


def test_a_body_that_is_not_json_is_422(client: TestClient, service: FakeService) -> None:
    r = client.put("/v1/vifs/tapvm1", content=b"{nope", headers={**AUTH,
                   "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 422 and service.changes == []


def test_plug_watch_and_cancel(client: TestClient, service: FakeService) -> None:
    r = client.put("/v1/vifs/tapvm1", json=VIF, headers=AUTH)
    assert r.status_code == 200 and r.json()["external_ids"] == {"iface-id": "ls-vm1"}
    body = WATCH
    assert client.put("/v1/port-readiness/ls-vm1", json=body, headers=AUTH).status_code == 202
    assert client.get("/v1/port-readiness/ls-vm1", headers=AUTH).json()["state"] == "waiting"
    assert client.delete("/v1/port-readiness/ls-vm1", headers=AUTH).status_code == 200
    assert client.get("/v1/port-readiness/ls-vm1", headers=AUTH).status_code == 404
    assert service.changes == [("plug", "tapvm1", "ls-vm1"),
                               ("watch_port", "ls-vm1", "02:00:00:00:00:01"),
                               ("cancel", "port", "ls-vm1")]  # fmt: skip


def test_port_open_watch_and_cancel(client: TestClient, service: FakeService) -> None:
    """Pre-activation's wait: its own route and kind, so it never replaces (or is cancelled
    with) the port-readiness watch of the same port."""
    body = WATCH
    assert client.put("/v1/port-open/ls-vm1", json=body, headers=AUTH).status_code == 202
    assert client.get("/v1/port-open/ls-vm1", headers=AUTH).json()["state"] == "waiting"
    assert client.get("/v1/port-readiness/ls-vm1", headers=AUTH).status_code == 404
    assert client.delete("/v1/port-open/ls-vm1", headers=AUTH).status_code == 200
    bad = {**body, "use_ovn_installed": True}  # not an option of this watch
    assert client.put("/v1/port-open/ls-vm1", json=bad, headers=AUTH).status_code == 422
    assert service.changes == [("watch_open", "ls-vm1", "02:00:00:00:00:01"),
                               ("cancel", "open", "ls-vm1")]  # fmt: skip


def test_the_tap_gate_closes_opens_idempotently_and_refuses_an_unplugged_tap(
        client: TestClient, service: FakeService) -> None:
    """Close, read, open (the reply says it was closed and what it dropped), open again
    (a no-op: not closed, nothing changed); an unplugged TAP is a 409 naming it; a name
    the kernel refuses never reaches the node."""
    r = client.put("/v1/tap-gate/tapvm1", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"tap": "tapvm1", "closed": True, "dropped": 0}
    assert client.get("/v1/tap-gate/tapvm1", headers=AUTH).json()["closed"] is True
    opened = client.delete("/v1/tap-gate/tapvm1", headers=AUTH).json()
    assert opened == {"tap": "tapvm1", "closed": True, "dropped": 7}
    again = client.delete("/v1/tap-gate/tapvm1", headers=AUTH).json()
    assert again == {"tap": "tapvm1", "closed": False, "dropped": 0}
    assert service.changes == [("close_gate", "tapvm1"), ("open_gate", "tapvm1")]
    missing = client.put("/v1/tap-gate/tapgone", headers=AUTH)
    assert missing.status_code == 409 and "tapgone is not plugged" in missing.text
    assert client.put("/v1/tap-gate/tap;rm", headers=AUTH).status_code == 422
    assert client.put("/v1/tap-gate/a-name-longer-than-15", headers=AUTH).status_code == 422
    assert len(service.changes) == 2


def test_the_verdict_long_poll_answers_when_the_verdict_comes() -> None:
    """The reply waits for the verdict (not for wait_s), carries the value the SB key
    gets, and an idle poll ends with ``waiting``; another request id is a 404."""
    service = FakeService(instant=False)
    client = TestClient(make_app(service, TOKEN))
    body = WATCH
    assert client.put("/v1/port-readiness/ls-vm1", json=body, headers=AUTH).status_code == 202
    path = "/v1/port-readiness/ls-vm1/verdict"
    idle = client.get(path, params={"request_id": RID, "wait_s": 0.05}, headers=AUTH)
    assert idle.status_code == 200 and idle.json()["state"] == "waiting"
    assert service.subscribers == []  # the idle poll unsubscribed

    answers: list[Any] = []
    started = time.monotonic()
    poll = threading.Thread(target=lambda: answers.append(client.get(
        path, params={"request_id": RID, "wait_s": 30}, headers=AUTH)))
    poll.start()
    deadline = time.monotonic() + 10
    while not service.subscribers and time.monotonic() < deadline:
        time.sleep(0.005)  # the poll reaches the fake in the app's thread
    assert service.subscribers, "the long poll never subscribed"
    service.settle("ready", '{"id": "x"}')
    poll.join(timeout=10)
    assert answers and answers[0].json() == {"lsp": "ls-vm1", "request_id": RID,
                                             "state": "ready", "value": '{"id": "x"}'}
    assert time.monotonic() - started < 10  # answered by the verdict, not by wait_s
    other = RID.replace("1234", "9999", 1)
    r = client.get(path, params={"request_id": other}, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["type"] == "NotWatched"
    bad = client.get(path, params={"request_id": RID, "wait_s": 0}, headers=AUTH)
    assert bad.status_code == 422
    # found: a mistyped parameter was ignored (the poll then held for the default 20 s)
    typo = client.get(path, params={"request_id": RID, "wait": 0.05}, headers=AUTH)
    assert typo.status_code == 422 and "wait" in typo.text
    assert service.changes == [("watch_port", "ls-vm1", "02:00:00:00:00:01")]


def test_a_cancel_names_its_request(client: TestClient, service: FakeService) -> None:
    """DELETE ...?request_id= cancels only that watch: another id is a 404 that changes
    nothing; an unknown query parameter is refused."""
    body = WATCH
    assert client.put("/v1/port-readiness/ls-vm1", json=body, headers=AUTH).status_code == 202
    other = RID.replace("1234", "9999", 1)
    r = client.delete("/v1/port-readiness/ls-vm1", params={"request_id": other}, headers=AUTH)
    assert r.status_code == 404
    r = client.delete("/v1/port-readiness/ls-vm1", params={"id": RID}, headers=AUTH)
    assert r.status_code == 422
    assert service.changes == [("watch_port", "ls-vm1", "02:00:00:00:00:01")]
    r = client.delete("/v1/port-readiness/ls-vm1", params={"request_id": RID}, headers=AUTH)
    assert r.status_code == 200
    assert service.changes[-1] == ("cancel", "port", "ls-vm1")


def test_faults_are_refused_unless_enabled(client: TestClient) -> None:
    r = client.post("/v1/controller/pause", headers=AUTH)
    assert r.status_code == 403 and r.json()["error"]["type"] == "FaultsDisabled"


def test_the_controller_watch_streams_alive_then_down(client: TestClient) -> None:
    r = client.get("/v1/controller/watch", headers=AUTH)
    assert r.status_code == 200 and r.text == "down: test\n"


@pytest.mark.parametrize(("error", "status"), [
    (InputError("x"), 400), (NotWatched("x"), 404), (FaultsDisabled("x"), 403),
    (PlugError("x"), 409), (ChassisUnreachable("x"), 503),
    (ControllerDown("hv2", "local", "x"), 503),
])  # fmt: skip
def test_errors_map_to_status_codes(error: Exception, status: int) -> None:
    assert status_for(error) == status  # type: ignore[arg-type]


def test_a_short_token_is_refused() -> None:
    with pytest.raises(InputError, match="16 characters"):
        make_app(FakeService(), "short")


# -- the contract test ------------------------------------------------------------------------

_contract_service = FakeService()
_contract_app = make_app(_contract_service, TOKEN)
schema = schemathesis.openapi.from_asgi("/v1/openapi.json", _contract_app, headers=AUTH)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_contract(case: schemathesis.Case[Any]) -> None:
    """Generated requests against the published OpenAPI: never a 5xx, responses match
    their schema, and a refused request leaves the node as it was."""
    before = len(_contract_service.changes)
    response = case.call(headers=AUTH)
    assert response.status_code < 500, response.text
    case.validate_response(response)
    if 400 <= response.status_code < 500:
        assert len(_contract_service.changes) == before, (case.path, response.text)
