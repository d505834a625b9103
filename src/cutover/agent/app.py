"""The agent's HTTP API (version 1): routes, authentication, errors.

Every route, the OpenAPI description included, requires ``Authorization: Bearer <token>``
(compared in constant time); anything else is a 401 that touches nothing. Requests are
validated against :mod:`cutover.agent.models` before a handler runs (422 otherwise).
cutover's own errors map to status codes at this one boundary::

    InputError (bad request, nothing changed)          400  (NotWatched 404, FaultsDisabled 403)
    PlugError                                          409  the node refused the change
    ChassisUnreachable / OvsdbError / WaitTimeout      503  a daemon of the node did not answer
    any other CutoverError                             500

Error bodies are ``{"error": {"type": ..., "message": ...}}``.

``PUT /v1/tap-gate/<tap>`` closes the TAP's gate (frames sent to it are dropped; 409 if
the TAP is not plugged, or is not a VM's: no ``iface-id``), ``DELETE`` opens it (a no-op
if it is not closed), ``GET`` reads it (docs/switchover.md, "The TAP gate").

``POST /v1/forget`` drops what the node holds for one migration (``cutover recover``
calls it on every chassis after a crashed orchestrator); ``POST /v1/controller/pause``
takes an optional ``resume_after_ms``: the agent owns that deadline.

The controller watch (``GET /v1/controller/watch``) is a stream: ``alive`` at once, a
heartbeat ``alive`` every :data:`HEARTBEAT_S`, and ``down: <reason>`` when ovn-controller
dies, after which the stream ends. The client learns of a death (or of the agent's own)
as an event, not by polling.

``GET /v1/<watch>/<lsp>/verdict?request_id=...&wait_s=...`` is a long poll on one
readiness watch: the agent answers it the moment its verdict is known, with the very value
it then writes to the SB (docs/readiness.md, "Two channels").
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cutover.agent import API_VERSION
from cutover.agent.models import (
    CancelQuery,
    ControllerState,
    ErrorResponse,
    ForgetRequest,
    ForgetResult,
    Health,
    LogicalPort,
    PathReadinessRequest,
    PauseRequest,
    PortOpenRequest,
    PortReadinessRequest,
    TapGateState,
    TapName,
    VerdictQuery,
    VerdictState,
    VifRequest,
    VifState,
    WatchState,
)
from cutover.agent.service import FaultsDisabled, NotWatched, Service
from cutover.chassis.base import PathTarget
from cutover.errors import (
    ChassisUnreachable,
    ControllerDown,
    CutoverError,
    InputError,
    OvsdbError,
    PlugError,
    WaitTimeout,
)

HEARTBEAT_S = 15.0
Kind = {"port-readiness": "port", "path-readiness": "path", "port-open": "open"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 422, 503)
}


def status_for(error: CutoverError) -> int:
    for kind, status in ((NotWatched, 404), (FaultsDisabled, 403), (InputError, 400),
                         (PlugError, 409), (ChassisUnreachable, 503), (OvsdbError, 503),
                         (WaitTimeout, 503)):  # fmt: skip
        if isinstance(error, kind):
            return status
    return 500


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


def make_app(service: Service, token: str) -> FastAPI:
    """The API for ``service``; every request must carry ``token``."""
    if len(token) < 16:
        raise InputError("the agent token must be at least 16 characters")
    expected = f"Bearer {token}".encode()

    def authenticated(authorization: Annotated[str | None, Header()] = None) -> None:
        given = (authorization or "").encode()
        if not hmac.compare_digest(given, expected):
            raise _Unauthorized()

    app = FastAPI(title="cutover agent", version=str(API_VERSION), openapi_url=None,
                  docs_url=None, redoc_url=None,
                  dependencies=[Depends(authenticated)], responses=_ERRORS)  # fmt: skip

    @app.exception_handler(_Unauthorized)
    async def unauthorized(request: Request, exc: _Unauthorized) -> JSONResponse:
        return _error(401, "Unauthorized", "missing or wrong bearer token")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Routing errors in the API's error format; a 405 lists every method the path
        has (Starlette's own lists only those of the first route that matched the path)."""
        response = _error(exc.status_code, "HTTPError", str(exc.detail))
        if exc.status_code == 405:
            allowed = sorted({m for r in app.router.routes if isinstance(r, APIRoute)
                              and r.matches(request.scope)[0] != Match.NONE
                              for m in r.methods or ()})  # fmt: skip
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A request that does not match its model: 422 in the API's one error format,
        each problem as ``where: what`` (FastAPI's own body is a different shape)."""
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors())  # fmt: skip
        return _error(422, "ValidationError", problems or "the request does not match the API")

    @app.exception_handler(CutoverError)
    async def cutover_error(request: Request, exc: CutoverError) -> JSONResponse:
        return _error(status_for(exc), type(exc).__name__, str(exc))

    @app.get("/v1/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/v1/health")
    def health() -> Health:
        return Health(chassis=service.chassis_name, api_version=API_VERSION,
                      faults_enabled=service.faults_enabled)  # fmt: skip

    @app.put("/v1/vifs/{tap}")
    def plug(tap: Annotated[TapName, Path()], body: VifRequest) -> VifState:
        service.plug(tap, body.lsp, body.mac, body.vm_uuid, body.mtu)
        return VifState(tap=tap, plugged=True, external_ids=service.vif_state(tap) or {})

    @app.delete("/v1/vifs/{tap}")
    def unplug(tap: Annotated[TapName, Path()]) -> VifState:
        service.unplug(tap)
        return VifState(tap=tap, plugged=False)

    @app.get("/v1/vifs/{tap}")
    def vif(tap: Annotated[TapName, Path()]) -> VifState:
        ids = service.vif_state(tap)
        return VifState(tap=tap, plugged=ids is not None, external_ids=ids or {})

    @app.put("/v1/tap-gate/{tap}")
    def close_gate(tap: Annotated[TapName, Path()]) -> TapGateState:
        """Drop every frame sent to the TAP from now on (its root qdisc becomes the gate's
        ``pfifo limit 0``); link, OVS port and OVN's view of the port are untouched."""
        service.close_tap_gate(tap)
        return TapGateState(tap=tap, closed=True)

    @app.delete("/v1/tap-gate/{tap}")
    def open_gate(tap: Annotated[TapName, Path()]) -> TapGateState:
        """Let frames reach the TAP again; the reply is the gate as found (``dropped``:
        what it dropped while closed). A no-op if no gate is closed."""
        found = service.open_tap_gate(tap)
        return TapGateState(tap=tap, closed=found.closed, dropped=found.dropped)

    @app.get("/v1/tap-gate/{tap}")
    def gate(tap: Annotated[TapName, Path()]) -> TapGateState:
        found = service.tap_gate(tap)
        return TapGateState(tap=tap, closed=found.closed, dropped=found.dropped)

    @app.put("/v1/port-readiness/{lsp}", status_code=202)
    def watch_port(lsp: Annotated[LogicalPort, Path()], body: PortReadinessRequest
                   ) -> WatchState:  # fmt: skip
        service.watch_port(lsp, body.tap, body.mac, body.request_id, body.timeout_s,
                           body.use_ovn_installed)  # fmt: skip
        return WatchState(lsp=lsp, state="waiting")

    @app.put("/v1/port-open/{lsp}", status_code=202)
    def watch_open(lsp: Annotated[LogicalPort, Path()], body: PortOpenRequest) -> WatchState:
        service.watch_open(lsp, body.tap, body.mac, body.request_id, body.timeout_s)
        return WatchState(lsp=lsp, state="waiting")

    @app.put("/v1/path-readiness/{lsp}", status_code=202)
    def watch_path(lsp: Annotated[LogicalPort, Path()], body: PathReadinessRequest
                   ) -> WatchState:  # fmt: skip
        target = PathTarget(lsp, body.port_key, body.datapath_key, body.dst,
                            tuple(body.dst_ips))  # fmt: skip
        service.watch_path(lsp, body.request_id, target, body.timeout_s)
        return WatchState(lsp=lsp, state="waiting")

    for prefix, kind in Kind.items():
        _watch_routes(app, service, prefix, kind)

    @app.get("/v1/controller")
    def controller() -> ControllerState:
        alive, detail = service.controller_alive()
        return ControllerState(chassis=service.chassis_name, alive=alive, detail=detail)

    @app.get("/v1/controller/watch", response_class=StreamingResponse)
    async def watch_controller() -> StreamingResponse:
        loop = asyncio.get_running_loop()
        died: asyncio.Future[str] = loop.create_future()

        def settle(reason: str) -> None:
            if not died.done():
                died.set_result(reason)

        def on_death(down: ControllerDown) -> None:
            loop.call_soon_threadsafe(settle, down.reason)

        try:
            watch = service.watch_controller(on_death)
        except ControllerDown as e:
            died.set_result(e.reason)
            watch = None

        async def lines() -> AsyncIterator[bytes]:
            try:
                if not died.done():
                    yield b"alive\n"
                while not died.done():
                    try:
                        await asyncio.wait_for(asyncio.shield(died), HEARTBEAT_S)
                    except TimeoutError:
                        yield b"alive\n"
                yield f"down: {died.result()}\n".encode()
            finally:
                if watch is not None:
                    watch.stop()

        return StreamingResponse(lines(), media_type="text/plain")

    @app.post("/v1/controller/pause", status_code=204)
    def pause(body: PauseRequest | None = None) -> None:
        service.pause_controller(body.resume_after_ms if body is not None else None)

    @app.post("/v1/controller/resume", status_code=204)
    def resume() -> None:
        service.resume_controller()

    @app.post("/v1/forget")
    def forget(body: ForgetRequest) -> ForgetResult:
        return ForgetResult(lsp=body.lsp, cleaned=service.forget(body.lsp, body.tap))

    return app


def _watch_routes(app: FastAPI, service: Service, prefix: str, kind: str) -> None:
    @app.get(f"/v1/{prefix}/{{lsp}}", name=f"{kind}_state")
    def state(lsp: Annotated[LogicalPort, Path()]) -> WatchState:
        name, detail = service.watch_state(kind, lsp)
        return WatchState(lsp=lsp, state=name, detail=detail)  # type: ignore[arg-type]

    @app.get(f"/v1/{prefix}/{{lsp}}/verdict", name=f"{kind}_verdict")
    async def verdict(lsp: Annotated[LogicalPort, Path()],
                      query: Annotated[VerdictQuery, Query()]) -> VerdictState:
        """Long poll: answers as soon as watch ``request_id`` has a verdict (the same
        value its SB key gets, handed to this reply before the SB write), or after
        ``wait_s`` with ``waiting``."""
        request_id, wait_s = query.request_id, query.wait_s
        loop = asyncio.get_running_loop()
        settled: asyncio.Future[tuple[str, str]] = loop.create_future()

        def settle(result: tuple[str, str]) -> None:
            if not settled.done():
                settled.set_result(result)

        def deliver(state: str, value: str) -> None:  # any thread
            loop.call_soon_threadsafe(settle, (state, value))

        unsubscribe = service.subscribe_verdict(kind, lsp, request_id, deliver)
        try:  # the future itself is awaited: the handler resumes in the loop's next turn
            async with asyncio.timeout(wait_s):
                state, value = await settled
        except TimeoutError:
            state, value = "waiting", ""
        finally:
            unsubscribe()
        return VerdictState(lsp=lsp, request_id=request_id, state=state,  # type: ignore[arg-type]
                            value=value)

    @app.delete(f"/v1/{prefix}/{{lsp}}", name=f"{kind}_cancel")
    def cancel(lsp: Annotated[LogicalPort, Path()],
               query: Annotated[CancelQuery, Query()]) -> WatchState:
        """Cancel the port's watch and withdraw its verdict; with ``request_id``, only if
        that is the watch the agent holds (404 and nothing changed otherwise)."""
        service.cancel_watch(kind, lsp, request_id=query.request_id)
        return WatchState(lsp=lsp, state="cancelled")


class _Unauthorized(Exception):
    pass
