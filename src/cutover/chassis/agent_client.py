"""The chassis seam through the chassis' agent: nothing here touches the chassis itself.

Requests go to the agent's API (:mod:`cutover.agent.app`) over a unix socket or HTTPS,
with the bearer token from the site's ``agent_token_file``. A readiness verdict comes by
two channels, whichever is first: the agent's SB record (:mod:`cutover.chassis.published`),
waited for with an OVSDB event registered before the request, exactly as Neutron waits
for a claim; and a long poll on the agent (``GET .../verdict``), which the agent answers
just before its SB write, one hop fewer (docs/readiness.md, "Two channels").
``CUTOVER_VERDICT_CHANNEL=sb`` turns the long poll off (the SB alone, as a central side
that cannot reach the agents would wait; used to measure the SB hop).

httpx errors are mapped here, at one boundary: a transport failure is
:class:`~cutover.errors.ChassisUnreachable`; the agent's own error bodies come back as the
cutover error they name where that is a request error (InputError, PlugError), else as
ChassisUnreachable with the agent's message.
"""

from __future__ import annotations

import os
import ssl
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx

from cutover.chassis.base import (
    GATE_OPEN_PORT_TIMEOUT_S,
    DeathCallback,
    PathTarget,
    TapGateState,
    Vif,
)
from cutover.chassis.published import (
    Verdict,
    decode,
    path_ready_key,
    port_open_key,
    port_ready_key,
)
from cutover.errors import (
    AgentDown,
    ChassisUnreachable,
    ControllerDown,
    CutoverError,
    InputError,
    PlugError,
    WaitTimeout,
)
from cutover.evidence import Evidence
from cutover.ovsdb.connection import now_ms
from cutover.ovsdb.sb import SbClient
from cutover.site import ChassisEndpoint

REQUEST_TIMEOUT_S = 10.0
PLUG_TIMEOUT_S = 60.0
"""os-vif's plug/unplug waits for ovs-vswitchd to apply the port change; on a loaded node
(L2: 2000 ports) under a busy CPU that took more than 10 s here (an unplug at the end of a
bench's return migration)."""
WATCH_READ_TIMEOUT_S = 45.0
"""Longer than the agent's controller-watch heartbeat (15 s): silence past it is a dead
agent."""
POLL_WAIT_S = 20.0
"""How long one verdict long poll is held open by the agent (then asked again)."""
CHANNEL_ENV = "CUTOVER_VERDICT_CHANNEL"
"""``sb``: wait for the agents' verdicts in the SB only; unset or ``first``: both."""
AGENT_WAIT_S = 3600.0
"""How long the agent's own wait may run: ours is shorter (and cancels it when it ends),
so our timeout, with the state we saw, is the one the operator gets."""


def verdict_channel() -> str:
    """:data:`CHANNEL_ENV` read and checked: ``first`` (default) or ``sb``."""
    value = os.environ.get(CHANNEL_ENV, "first")
    if value not in ("first", "sb"):
        raise InputError(f"{CHANNEL_ENV}={value!r}: use first (the agent's API or the SB, "
                         "whichever brings the verdict first) or sb")
    return value


def _token(endpoint: ChassisEndpoint) -> str:
    if not endpoint.agent_token_file:
        raise InputError(f"chassis {endpoint.name} has an agent but no agent_token_file")
    try:
        return Path(endpoint.agent_token_file).read_text().strip()
    except OSError as e:
        raise InputError(f"agent token of {endpoint.name} ({endpoint.agent_token_file}): "
                         f"{e.strerror}") from None  # fmt: skip


def http_client(endpoint: ChassisEndpoint, read_timeout: float = REQUEST_TIMEOUT_S
                ) -> httpx.Client:  # fmt: skip
    """An httpx client for ``endpoint.agent`` (``unix:/path`` or ``https://...``)."""
    agent = endpoint.agent or ""
    headers = {"Authorization": f"Bearer {_token(endpoint)}"}
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, read=read_timeout)
    if agent.startswith("unix:"):
        transport = httpx.HTTPTransport(uds=agent[len("unix:"):])
        return httpx.Client(transport=transport, base_url="http://agent", headers=headers,
                            timeout=timeout)  # fmt: skip
    if agent.startswith("https://"):
        return httpx.Client(base_url=agent, headers=headers, timeout=timeout,
                            verify=_tls_context(endpoint))  # fmt: skip
    raise InputError(f"chassis {endpoint.name}: agent {agent!r} must be unix:/path or https://")


def _tls_context(endpoint: ChassisEndpoint) -> ssl.SSLContext:
    """Verify the agent against ``agent_ca`` (else the system's CAs); present our client
    certificate when the site gives one (agents started with ``--tls-client-ca``).

    With a private ``agent_ca`` the CA is the trust anchor and host names are not checked,
    as OVS does for its own SSL peers (``ovs-pki`` certificates carry no subjectAltName)."""
    try:
        ctx = ssl.create_default_context(cafile=endpoint.agent_ca)
        if endpoint.agent_ca:
            ctx.check_hostname = False
        if endpoint.agent_client_cert:
            ctx.load_cert_chain(endpoint.agent_client_cert, endpoint.agent_client_key)
    except (OSError, ssl.SSLError) as e:
        raise InputError(f"chassis {endpoint.name}: agent TLS files do not load ({e}); check "
                         "agent_ca, client_cert and client_key") from None  # fmt: skip
    return ctx


def tls_hint(error: Exception, endpoint: ChassisEndpoint) -> str:
    """The remedy for a TLS refusal between us and an ``https`` agent ('' for others)."""
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (f"; the agent's server certificate does not verify against "
                f"{endpoint.agent_ca or 'the system CAs'}: set the chassis' ca to the CA "
                "that signed it")
    refused = "alert" in text.lower() or "SSL" in text or (
        isinstance(error, httpx.RemoteProtocolError) and "without sending" in text)
    if refused and (endpoint.agent or "").startswith("https://"):
        # TLS 1.3: the agent checks our certificate after the handshake and just closes
        return (f"; the agent most likely refused our client certificate "
                f"{endpoint.agent_client_cert or '(none given)'}: give client_cert/client_key "
                "signed by the CA of the agent's --tls-client-ca")
    return ""


class AgentChassis:
    """:class:`~cutover.chassis.base.Chassis` through its agent (see the module docstring)."""

    def __init__(self, endpoint: ChassisEndpoint, sb: SbClient | None = None) -> None:
        """``sb``: where the agent's verdicts are read; needed only for ``watch_*``, and
        only then is :data:`CHANNEL_ENV` checked (refused before a migration starts; the
        lab plugs its ports through agents without ``sb`` and waits for no verdict)."""
        if sb is not None:
            verdict_channel()
        self.name = endpoint.name
        self.endpoint = endpoint
        self._sb = sb
        self._http = http_client(endpoint)
        self._pending: list[tuple[str, threading.Thread]] = []
        self._failed: list[str] = []
        self._pending_lock = threading.Lock()

    @property
    def sb(self) -> SbClient:
        if self._sb is None:
            raise InputError(f"AgentChassis {self.name} has no SB connection to read "
                             "readiness from")  # fmt: skip
        return self._sb

    def request(self, method: str, path: str, json: Any = None,
                timeout_s: float | None = None) -> Any:
        """One API call; the response's JSON, or a cutover error (see the module).
        ``timeout_s``: read timeout of this call (default the client's)."""
        try:
            if timeout_s is None:
                r = self._http.request(method, path, json=json)
            else:
                r = self._http.request(method, path, json=json, timeout=httpx.Timeout(
                    REQUEST_TIMEOUT_S, read=timeout_s))
        except httpx.HTTPError as e:
            raise ChassisUnreachable(f"agent of {self.name} at {self.endpoint.agent}: "
                                     f"{type(e).__name__}: {e}{tls_hint(e, self.endpoint)}"
                                     ) from e  # fmt: skip
        if r.status_code < 300:
            return r.json() if r.content else None
        try:
            err = r.json()["error"]
            kind, message = str(err["type"]), str(err["message"])
        except (ValueError, KeyError, TypeError):
            kind, message = f"HTTP {r.status_code}", r.text[:300]
        text = f"agent of {self.name} at {self.endpoint.agent}: {kind}: {message}"
        if r.status_code == 401:
            raise ChassisUnreachable(
                f"{text}; the agent refused our credentials: give the token the agent "
                f"reads from its --token-file (ours: {self.endpoint.agent_token_file or 'none'})"
                " or a client certificate its --tls-client-ca signed"
            )
        if r.status_code == 409:
            raise PlugError(text)
        if r.status_code in (400, 403, 404, 422):
            raise InputError(text)
        raise ChassisUnreachable(text)

    def long_poll_client(self) -> httpx.Client:
        """A client of its own for one verdict long poll (its read timeout outlasts the
        agent's hold of the poll)."""
        return http_client(self.endpoint, read_timeout=POLL_WAIT_S + 10.0)

    # -- VIFs ------------------------------------------------------------------------------

    def plug(self, vif: Vif) -> None:
        self.request("PUT", f"/v1/vifs/{vif.tap}", {"lsp": vif.lsp, "mac": vif.mac,
                     "vm_uuid": vif.vm_uuid, "mtu": vif.mtu}, PLUG_TIMEOUT_S)  # fmt: skip

    def unplug(self, vif: Vif) -> None:
        self.request("DELETE", f"/v1/vifs/{vif.tap}", timeout_s=PLUG_TIMEOUT_S)

    def is_plugged(self, vif: Vif) -> bool:
        return bool(self.request("GET", f"/v1/vifs/{vif.tap}")["plugged"])

    # -- the TAP gate: on the switchover's critical path, so over the kept-alive client ----

    def close_tap_gate(self, vif: Vif) -> None:
        # the agent first waits up to GATE_OPEN_PORT_TIMEOUT_S for ovs-vswitchd to open the
        # port: a shorter read timeout would report a slow node as unreachable, and the
        # agent would still close the gate after our rollback had "opened" it
        self.request("PUT", f"/v1/tap-gate/{vif.tap}",
                     timeout_s=GATE_OPEN_PORT_TIMEOUT_S + REQUEST_TIMEOUT_S)

    def open_tap_gate(self, vif: Vif) -> TapGateState:
        found = self.request("DELETE", f"/v1/tap-gate/{vif.tap}")
        return TapGateState(bool(found["closed"]), int(found["dropped"]))

    def tap_gate(self, vif: Vif) -> TapGateState:
        found = self.request("GET", f"/v1/tap-gate/{vif.tap}")
        return TapGateState(bool(found["closed"]), int(found["dropped"]))

    # -- readiness ---------------------------------------------------------------------------

    def watch_port(self, vif: Vif, use_ovn_installed: bool = True) -> PublishedWatch:
        return PublishedWatch(self, "port-readiness", vif.lsp, port_ready_key(vif.lsp),
                              {"tap": vif.tap, "mac": vif.mac.lower(),
                               "use_ovn_installed": use_ovn_installed})

    def watch_unblocked(self, vif: Vif) -> PublishedWatch:
        return PublishedWatch(self, "port-open", vif.lsp, port_open_key(vif.lsp),
                              {"tap": vif.tap, "mac": vif.mac.lower()})

    def watch_path(self, target: PathTarget) -> PublishedWatch:
        return PublishedWatch(self, "path-readiness", target.lsp, path_ready_key(target.lsp),
                              {"port_key": target.port_key, "datapath_key": target.datapath_key,
                               "dst": target.dst, "dst_ips": list(target.dst_ips)})

    # -- ovn-controller -----------------------------------------------------------------------

    def watch_controller(self, role: str, on_death: DeathCallback) -> StreamedControllerWatch:
        return StreamedControllerWatch(self, role, on_death)

    def confirm_controller(self, role: str) -> None:
        try:
            state = self.request("GET", "/v1/controller")
        except ChassisUnreachable as e:
            raise AgentDown(self.name, role, str(e)) from e
        if not state["alive"]:
            raise ControllerDown(self.name, role, str(state.get("detail", "")))

    def pause_controller(self, resume_after_ms: float | None = None) -> None:
        body = None if resume_after_ms is None else {"resume_after_ms": resume_after_ms}
        self.request("POST", "/v1/controller/pause", body)

    def resume_controller(self) -> None:
        self.request("POST", "/v1/controller/resume")

    def forget(self, lsp: str, tap: str | None = None) -> list[str]:
        result = self.request("POST", "/v1/forget", {"lsp": lsp, "tap": tap})
        return [str(c) for c in result["cleaned"]]

    def withdraw_later(self, route: str, lsp: str, request_id: str) -> None:
        """Cancel the agent's watch ``request_id`` (it withdraws its SB key) from a thread:
        the orchestrator goes on at once; :meth:`finish_pending` waits for it. Scoped to
        the request: landing late, it cannot stop a newer watch of the same port."""
        path = f"/v1/{route}/{lsp}?request_id={request_id}"

        def withdraw() -> None:
            try:
                self.request("DELETE", path)
            except InputError:
                pass  # already gone on the agent
            except CutoverError as e:
                with self._pending_lock:
                    self._failed.append(f"DELETE {path}: {e}")

        thread = threading.Thread(target=withdraw, name=f"withdraw-{route}-{lsp}", daemon=True)
        with self._pending_lock:
            self._pending.append((path, thread))
        thread.start()

    def finish_pending(self) -> list[str]:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for path, thread in pending:
            thread.join(REQUEST_TIMEOUT_S + 1.0)
            if thread.is_alive():
                with self._pending_lock:
                    self._failed.append(f"DELETE {path}: no answer within "
                                        f"{REQUEST_TIMEOUT_S:.0f} s")
        with self._pending_lock:
            failed, self._failed = self._failed, []
        return failed


class PublishedWatch:
    """A readiness watch run by an agent; its verdict arrives as an SB row change."""

    def __init__(self, chassis: AgentChassis, route: str, lsp: str, key: str,
                 body: dict[str, Any]) -> None:
        self._chassis, self._route, self._lsp, self._key = chassis, route, lsp, key
        self._request_id = str(uuid.uuid4())
        self._event = threading.Event()
        self._interrupted: BaseException | None = None

        self._verdict: Verdict | None = None
        self._seen_ms: float | None = None
        self._channel = ""
        self._take_lock = threading.Lock()
        self._armed = False

        def mine(value: str) -> bool:
            """In the IDL thread: keep the verdict and its time, then wake the wait."""
            return self._take(value, "the SB")

        # registered BEFORE the request: the verdict cannot be missed
        self._sb_watch = chassis.sb.watch_published(chassis.name, key, mine,
                                                     f"{route} of {lsp} on {chassis.name}")
        try:
            chassis.request("PUT", f"/v1/{route}/{lsp}", {
                **body, "request_id": self._request_id, "timeout_s": AGENT_WAIT_S})
        except CutoverError:
            self._sb_watch.cancel()
            raise
        self._armed = True
        self._poll_error = ""
        if verdict_channel() == "first":
            threading.Thread(target=self._poll, name=f"verdict-{route}-{lsp}",
                             daemon=True).start()  # fmt: skip

    def _take(self, value: str, channel: str) -> bool:
        """Keep the first verdict of this request, whichever channel brought it."""
        verdict = decode(value)
        ok = verdict is not None and verdict.request_id == self._request_id
        with self._take_lock:
            if ok and self._verdict is None:
                self._verdict, self._seen_ms, self._channel = verdict, now_ms(), channel
                self._event.set()
        return ok

    def _poll(self) -> None:
        """The long poll (a thread per watch, its own HTTP connection): ends with the
        verdict, the watch's cancel, or an error (then the SB channel alone remains)."""
        client = self._chassis.long_poll_client()
        path = f"/v1/{self._route}/{self._lsp}/verdict"
        try:
            while self._armed and self._verdict is None:
                r = client.get(path, params={"request_id": self._request_id,
                                             "wait_s": POLL_WAIT_S})  # fmt: skip
                if r.status_code != 200:
                    self._poll_error = f"HTTP {r.status_code}: {r.text[:200]}"
                    return
                answer = r.json()
                if answer["state"] in ("ready", "failed"):
                    self._take(str(answer["value"]), "the agent's API")
                    return
                if answer["state"] != "waiting":
                    return  # cancelled
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            self._poll_error = f"{type(e).__name__}: {e}"
        finally:
            client.close()

    def interrupt(self, cause: BaseException) -> None:
        self._interrupted = cause
        self._event.set()

    def wait(self, timeout_s: float) -> Evidence:
        deadline = now_ms() + timeout_s * 1000.0
        try:
            while not self._event.wait(max(0.0, (deadline - now_ms()) / 1000.0)):
                if now_ms() >= deadline:
                    raise WaitTimeout(f"{self._route} of {self._lsp} on {self._chassis.name} "
                                      "(published by its agent)", timeout_s, self.describe())
            if self._interrupted is not None:
                raise self._interrupted
            verdict = self._verdict
            assert verdict is not None and self._seen_ms is not None
            if verdict.evidence is None:
                raise WaitTimeout(f"{self._route} of {self._lsp} on {self._chassis.name}",
                                  timeout_s, f"the agent's own wait failed: {verdict.error}")
            ev = verdict.evidence
            seen = self._seen_ms
            marks = (*ev.marks, (f"{ev.check}.on-chassis", ev.seen_ms,
                                 f"seen by the agent of {self._chassis.name}"))
            return Evidence(ev.check, seen, ev.detail + f"; published by the agent, seen here "
                            f"{seen - ev.seen_ms:.1f} ms after the agent saw it, by "
                            f"{self._channel}",
                            committed_ms=ev.committed_ms, marks=marks)  # fmt: skip
        finally:
            self.cancel()

    def describe(self) -> str:
        """What the agent's own wait sees now (asked only to explain a timeout)."""
        try:
            state = self._chassis.request("GET", f"/v1/{self._route}/{self._lsp}")
            said = f"agent of {self._chassis.name}: {state['state']}: {state['detail']}"
        except CutoverError as e:
            said = f"the agent could not say ({e})"
        if self._poll_error:
            said += f"; the verdict long poll failed ({self._poll_error}): the SB alone counts"
        return said

    def cancel(self) -> None:
        """Stop waiting; the agent stops too and withdraws its SB key (idempotent). The
        request goes from a thread (:meth:`AgentChassis.withdraw_later`): it took 10-60 ms
        here, between the verdict and the next step - with pre-activation, inside the
        window in which cloned traffic queues in the destination TAP."""
        self._sb_watch.cancel()
        if self._armed:
            self._armed = False
            self._chassis.withdraw_later(self._route, self._lsp, self._request_id)


class StreamedControllerWatch:
    """Listens to the agent's controller-watch stream in a thread (see agent/app.py)."""

    def __init__(self, chassis: AgentChassis, role: str, on_death: DeathCallback) -> None:
        self._name, self._role, self._on_death = chassis.name, role, on_death
        self._stopped = threading.Event()
        self._first = threading.Event()
        self._first_line = ""
        self._agent_reason = ""
        self._client = http_client(chassis.endpoint, read_timeout=WATCH_READ_TIMEOUT_S)
        self._thread = threading.Thread(target=self._listen, name=f"controller-{chassis.name}",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        if not self._first.wait(REQUEST_TIMEOUT_S) or self._first_line != "alive":
            self.stop()
            if self._first_line.startswith("down"):
                raise ControllerDown(self._name, role, self._first_line.removeprefix("down: "))
            raise AgentDown(self._name, role, self._agent_reason
                            or "it did not answer the controller watch")

    def _listen(self) -> None:
        reason = ""
        try:
            with self._client.stream("GET", "/v1/controller/watch") as r:
                if r.status_code != 200:
                    self._agent_reason = f"it refused the controller watch (HTTP {r.status_code})"
                else:
                    for line in r.iter_lines():
                        if not self._first.is_set():
                            self._first_line = line
                            self._first.set()
                        if line.startswith("down"):
                            reason = line.removeprefix("down: ")
                            break
        except httpx.HTTPError as e:
            self._agent_reason = f"{type(e).__name__}: {e}"
        finally:
            self._first.set()
        if self._stopped.is_set():
            return
        if reason:
            self._on_death(ControllerDown(self._name, self._role, reason))
        else:  # the stream ended without "down": the agent itself went away
            self._on_death(AgentDown(self._name, self._role,
                                     self._agent_reason or "its controller watch ended"))

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._client.close()
        self._thread.join(timeout=2.0)
