"""The agent client maps the agent's HTTP answers onto cutover's exception tree at one
boundary, each message naming the chassis, the agent and the remedy (httpx MockTransport:
no agent runs)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cutover.chassis.agent_client import REQUEST_TIMEOUT_S, AgentChassis
from cutover.chassis.base import GATE_OPEN_PORT_TIMEOUT_S, Vif
from cutover.errors import ChassisUnreachable, InputError, PlugError
from cutover.site import ChassisEndpoint


def chassis(tmp_path: Path, status: int, body: object) -> AgentChassis:
    token = tmp_path / "token"
    token.write_text("t" * 32)
    endpoint = ChassisEndpoint("hv2", "", agent="unix:/run/agent.sock",
                               agent_token_file=str(token))  # fmt: skip
    c = AgentChassis(endpoint)
    c._http = httpx.Client(base_url="http://agent", transport=httpx.MockTransport(
        lambda request: httpx.Response(status, json=body)))  # fmt: skip
    return c


def error(kind: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"type": kind, "message": message}}


def test_refused_credentials_name_the_agent_and_the_token_file(tmp_path: Path) -> None:
    c = chassis(tmp_path, 401, error("Unauthorized", "missing or wrong bearer token"))
    with pytest.raises(ChassisUnreachable) as e:
        c.request("GET", "/v1/health")
    text = str(e.value)
    assert "agent of hv2 at unix:/run/agent.sock: Unauthorized" in text
    assert "--token-file" in text and str(tmp_path / "token") in text


@pytest.mark.parametrize(("status", "exc"), [
    (409, PlugError), (400, InputError), (404, InputError), (422, InputError),
    (500, ChassisUnreachable), (503, ChassisUnreachable),
])
def test_each_status_has_one_exception(tmp_path: Path, status: int,
                                       exc: type[Exception]) -> None:
    c = chassis(tmp_path, status, error("Kind", "what went wrong"))
    with pytest.raises(exc) as e:
        c.request("PUT", "/v1/vifs/tap1", {})
    assert "agent of hv2 at unix:/run/agent.sock: Kind: what went wrong" in str(e.value)


def test_a_body_that_is_not_the_error_shape_is_quoted(tmp_path: Path) -> None:
    c = chassis(tmp_path, 502, ["not", "an", "error"])
    with pytest.raises(ChassisUnreachable, match="HTTP 502"):
        c.request("GET", "/v1/health")


def test_closing_a_tap_gate_waits_as_long_as_the_agent_may(tmp_path: Path) -> None:
    """The agent waits up to GATE_OPEN_PORT_TIMEOUT_S for ovs-vswitchd to open the port
    before it closes the gate; a shorter read timeout would call a slow node unreachable
    while the agent still closes the gate after the rollback's open."""
    seen: list[dict[str, float]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"tap": "tap1", "closed": True, "dropped": 0})

    c = chassis(tmp_path, 200, None)
    c._http = httpx.Client(base_url="http://agent", transport=httpx.MockTransport(answer),
                           timeout=httpx.Timeout(REQUEST_TIMEOUT_S))  # fmt: skip
    c.close_tap_gate(Vif("lsp1", "tap1", "fa:16:3e:00:00:01", "uuid"))
    assert seen[0]["read"] > GATE_OPEN_PORT_TIMEOUT_S, seen
