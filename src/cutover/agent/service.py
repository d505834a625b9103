"""What the agent does on its node, independent of HTTP.

Everything runs through :class:`~cutover.chassis.local.LocalChassis` (the same code the
orchestrator uses when it reaches a chassis directly), plus the two things only an agent
does: it runs readiness waits in the background and publishes their verdicts in the SB
(:mod:`cutover.chassis.published`), and it keeps track of them so they can be read,
cancelled, and withdrawn when the migration ends.

:class:`Service` is the seam the HTTP layer talks to; the contract tests drive the HTTP
layer against a recording fake of it, so that fuzzing the API changes nothing on a node.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from cutover.chassis.base import (
    ControllerWatch,
    DeliversVerdict,
    PathTarget,
    TapGateState,
    Vif,
    Watch,
)
from cutover.chassis.local import LocalChassis, VifPlugger
from cutover.chassis.published import (
    KEY_PREFIX,
    encode_failed,
    encode_ready,
    path_ready_key,
    port_open_key,
    port_ready_key,
)
from cutover.errors import ControllerDown, CutoverError, InputError
from cutover.evidence import Evidence
from cutover.ovsdb.connection import now_ms
from cutover.ovsdb.sb import SbClient
from cutover.site import ChassisEndpoint

ROLE = "local"


class FaultsDisabled(InputError):
    """Fault injection was asked of an agent started without ``--allow-faults``."""


class NotWatched(InputError):
    """No readiness watch exists for that port on this agent."""


_KEYS: dict[str, Callable[[str], str]] = {
    "port": port_ready_key, "open": port_open_key, "path": path_ready_key,
}
"""Each watch kind's SB key (``Chassis_Private.external_ids``) for a logical port."""


Deliver = Callable[[str, str], None]
"""Called with (state, encoded verdict) once a watch ends: ``ready`` or ``failed`` with the
value the SB key gets, ``cancelled`` with ""."""


@dataclass
class _Job:
    kind: str
    lsp: str
    key: str
    request_id: str
    watch: Watch
    state: str = "waiting"
    detail: str = ""
    value: str = ""
    """The encoded verdict (:mod:`cutover.chassis.published`) once ready or failed."""
    thread: threading.Thread | None = field(default=None, repr=False)
    subscribers: list[Deliver] = field(default_factory=list, repr=False)
    """Who waits for the verdict on the API (:meth:`NodeService.subscribe_verdict`)."""
    sb_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Orders the verdict's SB write against the cancel's removal of the key."""
    early: bool = False
    """The verdict went to the API subscribers from the thread that made it
    (:meth:`NodeService._deliver_early`); the job's thread then only writes it to the SB."""


class Service(Protocol):
    """The operations of one agent (see the module docstring)."""

    chassis_name: str
    faults_enabled: bool

    def plug(self, tap: str, lsp: str, mac: str, vm_uuid: str, mtu: int) -> None: ...
    def unplug(self, tap: str) -> None: ...
    def vif_state(self, tap: str) -> dict[str, str] | None: ...
    def close_tap_gate(self, tap: str) -> None: ...
    def open_tap_gate(self, tap: str) -> TapGateState: ...
    def tap_gate(self, tap: str) -> TapGateState: ...
    def watch_port(self, lsp: str, tap: str, mac: str, request_id: str, timeout_s: float,
                   use_ovn_installed: bool) -> None: ...
    def watch_open(self, lsp: str, tap: str, mac: str, request_id: str,
                   timeout_s: float) -> None: ...
    def watch_path(self, lsp: str, request_id: str, target: PathTarget,
                   timeout_s: float) -> None: ...
    def watch_state(self, kind: str, lsp: str) -> tuple[str, str]: ...
    def subscribe_verdict(self, kind: str, lsp: str, request_id: str,
                          deliver: Deliver) -> Callable[[], None]: ...
    def cancel_watch(self, kind: str, lsp: str, missing_ok: bool = False,
                     request_id: str | None = None) -> None: ...
    def controller_alive(self) -> tuple[bool, str]: ...
    def watch_controller(self, on_death: Callable[[ControllerDown], None]) -> ControllerWatch: ...
    def pause_controller(self, resume_after_ms: float | None = None) -> None: ...
    def resume_controller(self) -> None: ...
    def forget(self, lsp: str, tap: str | None) -> list[str]: ...


class NodeService:
    """:class:`Service` on a real node."""

    def __init__(self, endpoint: ChassisEndpoint, sb_remote: str,
                 faults_enabled: bool = False, plugger: VifPlugger | None = None,
                 state_file: Path | None = None) -> None:
        """``plugger``: how VIFs are plugged here (the agent passes os-vif's).
        ``state_file``: where the agent keeps what must outlive it (a timed controller
        pause's deadline); read by :meth:`restart_cleanup`."""
        self.chassis_name = endpoint.name
        self.faults_enabled = faults_enabled
        self._sb = SbClient(sb_remote)
        self._chassis = LocalChassis(endpoint, self._sb, plugger=plugger)
        self._plugger = plugger
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._lock = threading.Lock()
        self._starting: dict[tuple[str, str], threading.Lock] = {}
        """One lock per (kind, port): a start replaces the earlier watch as one step."""
        self._state_file = state_file

    # -- VIFs ------------------------------------------------------------------------------

    def plug(self, tap: str, lsp: str, mac: str, vm_uuid: str, mtu: int) -> None:
        self._chassis.plug(Vif(lsp, tap, mac, vm_uuid, mtu))

    def unplug(self, tap: str) -> None:
        self._chassis.unplug(Vif("", tap, "", ""))

    def vif_state(self, tap: str) -> dict[str, str] | None:
        """The Interface's external_ids if a TAP or port of that name is here, else None."""
        if not self._chassis.is_plugged(Vif("", tap, "", "")):
            return None
        return self._chassis.vswitch.interface_external_ids(tap) or {}

    # -- the TAP gate (rtnetlink in the agent's own namespace: well under a ms) -----------------

    def close_tap_gate(self, tap: str) -> None:
        self._chassis.close_tap_gate(Vif("", tap, "", ""))

    def open_tap_gate(self, tap: str) -> TapGateState:
        return self._chassis.open_tap_gate(Vif("", tap, "", ""))

    def tap_gate(self, tap: str) -> TapGateState:
        return self._chassis.tap_gate(Vif("", tap, "", ""))

    # -- readiness ---------------------------------------------------------------------------

    def watch_port(self, lsp: str, tap: str, mac: str, request_id: str, timeout_s: float,
                   use_ovn_installed: bool) -> None:
        vif = Vif(lsp, tap, mac, "")
        self._start("port", lsp, port_ready_key(lsp), request_id, timeout_s,
                    lambda: self._chassis.watch_port(vif, use_ovn_installed))  # fmt: skip

    def watch_open(self, lsp: str, tap: str, mac: str, request_id: str,
                   timeout_s: float) -> None:
        vif = Vif(lsp, tap, mac, "")
        self._start("open", lsp, port_open_key(lsp), request_id, timeout_s,
                    lambda: self._chassis.watch_unblocked(vif))  # fmt: skip

    def watch_path(self, lsp: str, request_id: str, target: PathTarget,
                   timeout_s: float) -> None:
        self._start("path", lsp, path_ready_key(lsp), request_id, timeout_s,
                    lambda: self._chassis.watch_path(target))  # fmt: skip

    def _start(self, kind: str, lsp: str, key: str, request_id: str, timeout_s: float,
               arm: Callable[[], Watch]) -> None:
        """Replace any earlier watch of this port, withdraw its verdict, arm the new one
        (errors reach the caller), and wait for it in the background. Two starts for one
        port (concurrent requests: the API runs them in a thread pool) go one after the
        other: else both could cancel nothing, and the one registered first would run on
        unseen, never cancelled, and write its verdict to the SB for good."""
        with self._lock:
            starting = self._starting.setdefault((kind, lsp), threading.Lock())
        with starting:
            self.cancel_watch(kind, lsp, missing_ok=True)
            job = _Job(kind, lsp, key, request_id, arm())
            job.thread = threading.Thread(target=self._run, args=(job, timeout_s),
                                          name=f"{kind}-{lsp}", daemon=True)  # fmt: skip
            with self._lock:
                self._jobs[(kind, lsp)] = job
            if isinstance(job.watch, DeliversVerdict):
                job.watch.on_verdict(lambda evidence: self._deliver_early(job, evidence))
            job.thread.start()

    def _run(self, job: _Job, timeout_s: float) -> None:
        try:
            self._wait_and_publish(job, timeout_s)
        finally:
            job.watch.cancel()  # after the publication: reaping is off the critical path

    def _wait_and_publish(self, job: _Job, timeout_s: float) -> None:
        """A cancelled job publishes nothing: :meth:`_publish` settles only a waiting one."""
        try:
            evidence = job.watch.wait(timeout_s)
        except CutoverError as e:
            self._publish(job, "failed", f"{type(e).__name__}: {e}",
                          encode_failed(job.request_id, e))
            return
        self._publish(job, "ready", evidence.detail, self._ready_value(job, evidence))

    def _ready_value(self, job: _Job, evidence: Evidence) -> str:
        marks = (*evidence.marks, (f"{evidence.check}.publish", now_ms(),
                                   f"the agent of {self.chassis_name} hands its verdict on "
                                   "(API reply, SB write)"))  # fmt: skip
        return encode_ready(job.request_id, replace(evidence, marks=marks))

    def _deliver_early(self, job: _Job, evidence: Evidence) -> None:
        """In the thread that made the verdict (an IDL thread or a flow-monitor reader):
        to the API subscribers at once - a hand-off to the server's loop, nothing that
        blocks; the job's thread writes it to the SB when its wait returns."""
        with self._lock:
            if job.state != "waiting":
                return
            job.early = True
        self._settle(job, "ready", evidence.detail, self._ready_value(job, evidence))

    def _publish(self, job: _Job, state: str, detail: str, value: str) -> None:
        """The verdict to its API subscribers first (a thread hand-off, well under a ms),
        then to the SB (a transaction: the record the central side can always read).
        A verdict delivered early (:meth:`_deliver_early`) is written as it was sent."""
        with job.sb_lock:
            if not self._settle(job, state, detail, value):
                if not (job.early and job.state == "ready"):
                    return  # cancelled meanwhile: its key is withdrawn, never written again
                value = job.value
            try:
                self._sb.publish(self.chassis_name, job.key, value)
            except CutoverError as e:
                job.state, job.detail = "failed", f"could not publish in the SB: {e}"

    def _settle(self, job: _Job, state: str, detail: str, value: str) -> bool:
        """End a waiting job (a cancel ends any); False if it had ended already."""
        with self._lock:
            if job.state != "waiting" and state != "cancelled":
                return False
            job.state, job.detail, job.value = state, detail, value
            waiting, job.subscribers = job.subscribers, []
        for deliver in waiting:
            deliver(state, value)
        return True

    def subscribe_verdict(self, kind: str, lsp: str, request_id: str,
                          deliver: Deliver) -> Callable[[], None]:
        """Have ``deliver`` called once the watch ``request_id`` of ``lsp`` ends (at once if
        it has; from the watch's thread otherwise). Returns the unsubscribe function.
        NotWatched if this agent has no such watch (another request id included: the
        verdict asked for can never come)."""
        with self._lock:
            job = self._jobs.get((kind, lsp))
            if job is None or job.request_id != request_id:
                current = f" (its current watch is {job.request_id})" if job else ""
                raise NotWatched(f"no {kind} readiness watch {request_id} for {lsp} on "
                                 f"{self.chassis_name}{current}")  # fmt: skip
            state, value = job.state, job.value
            if state == "waiting":
                job.subscribers.append(deliver)
        if state != "waiting":
            deliver(state, value)
            return lambda: None

        def unsubscribe() -> None:
            with self._lock:
                if deliver in job.subscribers:
                    job.subscribers.remove(deliver)

        return unsubscribe

    def watch_state(self, kind: str, lsp: str) -> tuple[str, str]:
        """(state, detail); while waiting the detail is what the wait sees right now."""
        with self._lock:
            job = self._jobs.get((kind, lsp))
        if job is None:
            raise NotWatched(f"no {kind} readiness watch for {lsp} on {self.chassis_name}")
        if job.state == "waiting":
            return job.state, job.watch.describe()
        return job.state, job.detail

    def cancel_watch(self, kind: str, lsp: str, missing_ok: bool = False,
                     request_id: str | None = None) -> None:
        """Stop the watch and withdraw its verdict from the SB (idempotent). With
        ``request_id``: only that watch; NotWatched, and nothing touched, if the agent
        holds none or another one (a newer request for the same port)."""
        with self._lock:
            job = self._jobs.get((kind, lsp))
            if request_id is not None and (job is None or job.request_id != request_id):
                current = f" (it holds {job.request_id})" if job is not None else ""
                raise NotWatched(f"no {kind} readiness watch {request_id} for {lsp} on "
                                 f"{self.chassis_name}{current}: nothing cancelled")
            self._jobs.pop((kind, lsp), None)
        key = _KEYS[kind](lsp)
        if job is not None:
            with job.sb_lock:
                self._settle(job, "cancelled", "", "")
                self._sb.unpublish(self.chassis_name, key)
            job.watch.interrupt(InputError("cancelled"))
            if job.thread is None or not job.thread.is_alive():
                job.watch.cancel()
            # else the job's thread stops the watch (its flow monitors, a background dump)
            # on its way out: the caller - the orchestrator, right after the verdict -
            # does not wait for processes to be reaped
            return
        if not missing_ok:
            raise NotWatched(f"no {kind} readiness watch for {lsp} on {self.chassis_name}")
        self._sb.unpublish(self.chassis_name, key)

    # -- ovn-controller -----------------------------------------------------------------------

    def controller_alive(self) -> tuple[bool, str]:
        try:
            self._chassis.confirm_controller(ROLE)
        except ControllerDown as e:
            return False, e.reason
        return True, "answers on its unixctl socket"

    def watch_controller(self, on_death: Callable[[ControllerDown], None]) -> ControllerWatch:
        return self._chassis.watch_controller(ROLE, on_death)

    def pause_controller(self, resume_after_ms: float | None = None) -> None:
        """Pause; with ``resume_after_ms`` THIS agent resumes it on time (the deadline is in
        its state file too, so a restarted agent still honours it)."""
        self._faults("pause")
        # recorded first: a crash right after still resumes; an untimed pause is the
        # caller's to end, so a restart must not end it
        until = None if resume_after_ms is None else time.time() * 1000.0 + resume_after_ms
        self._save_state(paused_until_ms=until)
        self._chassis.pause_controller(resume_after_ms)

    def resume_controller(self) -> None:
        self._faults("resume")
        self._chassis.resume_controller()
        self._save_state(paused_until_ms=None)

    # -- recovery ----------------------------------------------------------------------------

    def forget(self, lsp: str, tap: str | None) -> list[str]:
        """Drop everything this node holds for a migration of ``lsp`` (idempotent; see
        :meth:`cutover.chassis.base.Chassis.forget`)."""
        cleaned = []
        for kind in _KEYS:
            with self._lock:
                watched = (kind, lsp) in self._jobs
            if watched:
                self.cancel_watch(kind, lsp, missing_ok=True)
                cleaned.append(f"{kind} readiness watch")
        cleaned += self._chassis.forget(lsp, tap)
        if self._chassis.paused_until_ms is None:
            self._save_state(paused_until_ms=None)
        return cleaned

    def check_identity(self) -> None:
        """InputError unless this node's Open_vSwitch DB names the agent's chassis as its
        ``external_ids:system-id``: an agent started with another node's name would plug
        TAPs here and publish readiness in that chassis' SB row."""
        system_id = self._chassis.vswitch.system_id()
        if system_id != self.chassis_name:
            raise InputError(
                f"--chassis {self.chassis_name}: the Open_vSwitch DB at "
                f"{self._chassis.endpoint.ovs_remote} belongs to chassis {system_id!r} (its "
                "external_ids:system-id); give that name, or the --ovs-remote of this node"
            )

    def restart_cleanup(self) -> list[str]:
        """At start: what an earlier run of this agent left behind is ended - its published
        verdicts (their waits died with it) and a timed controller pause (resumed now if its
        deadline passed, else re-armed for the rest). Returns what it did."""
        done = []
        row = next((r for r in self._sb.rows("Chassis_Private")
                    if r.name == self.chassis_name), None)  # fmt: skip
        for key in sorted(row.external_ids if row is not None else ()):
            if key.startswith(f"{KEY_PREFIX}-"):
                self._sb.unpublish(self.chassis_name, key)
                done.append(f"withdrew SB key {key}")
        until = self._load_state().get("paused_until_ms")
        if isinstance(until, (int, float)):
            left = until - time.time() * 1000.0
            if left <= 0:
                self._chassis.resume_controller()
                self._save_state(paused_until_ms=None)
                done.append("resumed ovn-controller (its pause deadline had passed)")
            else:
                self._chassis.pause_controller(left)
                done.append(f"re-armed the controller's resume in {left:.0f} ms")
        return done

    def _load_state(self) -> dict[str, object]:
        if self._state_file is None:
            return {}
        try:
            data = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self, **values: object) -> None:
        if self._state_file is None:
            return
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({**self._load_state(), **values}))
        os.replace(tmp, self._state_file)

    def _faults(self, what: str) -> None:
        if not self.faults_enabled:
            raise FaultsDisabled(
                f"agent of {self.chassis_name} does not inject faults ({what} refused); "
                "start it with --allow-faults (labs only)"
            )

    def close(self) -> None:
        """Cancel every watch, withdraw every verdict, stop the plugger's helpers (agent
        shutdown)."""
        with self._lock:
            jobs = list(self._jobs.items())
        for (kind, lsp), _ in jobs:
            with contextlib.suppress(CutoverError):
                self.cancel_watch(kind, lsp, missing_ok=True)
        for _, job in jobs:  # their threads stop the watches: nothing left running
            if job.thread is not None:
                job.thread.join(timeout=15.0)
            job.watch.cancel()
        close = getattr(self._plugger, "close", None)
        if close is not None:
            close()
