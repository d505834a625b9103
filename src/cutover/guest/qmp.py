"""A synchronous QMP connection over the ``qemu.qmp`` library, and QMP data parsing.

The migration core is synchronous, while ``qemu.qmp`` is asyncio. :class:`Monitor`
runs every call on one event loop shared by all monitors of a hypervisor object, so
while we wait for an event of the destination the source's socket is read too, and
every event ever received stays in :attr:`Monitor.events` for later questions ("when
did the source stop?"). This is the one boundary where ``qemu.qmp`` errors, socket
errors and asyncio timeouts become :class:`~cutover.errors.GuestError` /
:class:`~cutover.errors.WaitTimeout`.

Times: QEMU stamps each event with its own wall clock (``timestamp`` seconds +
microseconds, ``g_get_real_time``); :func:`event_ms` converts it to wall milliseconds,
the unit of the prober's samples, so reading an event late costs no accuracy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient, QMPError
from qemu.qmp.qmp_client import ExecuteError

from cutover.errors import GuestError, WaitTimeout

CHECK_EVERY_S = 0.05
"""How often a wait runs its liveness check (the wake-up is an event otherwise)."""

Event = dict[str, Any]
EventFilter = Callable[[Event], bool]


def event_ms(event: Mapping[str, Any]) -> float:
    """QEMU's own timestamp of ``event`` in wall-clock ms (GuestError if it has none)."""
    ts = event.get("timestamp")
    try:
        assert isinstance(ts, Mapping)
        return float(ts["seconds"]) * 1000.0 + float(ts["microseconds"]) / 1000.0
    except (AssertionError, KeyError, TypeError, ValueError) as e:
        raise GuestError(f"QMP event without a valid timestamp: {event!r}") from e


def migration_figures(info: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of a ``query-migrate`` answer that go into a run record.

    ``total_ms``, ``downtime_ms`` (QEMU's own, which understates the client's view and
    reads 0 after long pre-switchover holds), ``setup_ms``, ``ram_transferred_mb`` (MiB),
    ``ram_mbps`` (QEMU's Mbit/s), ``dirty_sync_count``; a key is absent when QEMU did
    not report it (e.g. before completion).
    """
    out: dict[str, Any] = {"status": info.get("status", "unknown")}
    for key, name in (("total-time", "total_ms"), ("downtime", "downtime_ms"),
                      ("setup-time", "setup_ms")):
        if isinstance(info.get(key), int | float):
            out[name] = float(info[key])
    ram = info.get("ram")
    if isinstance(ram, Mapping):
        if isinstance(ram.get("transferred"), int | float):
            out["ram_transferred_mb"] = round(ram["transferred"] / 2**20, 3)
        if isinstance(ram.get("mbps"), int | float):
            out["ram_mbps"] = round(float(ram["mbps"]), 1)
        if isinstance(ram.get("dirty-sync-count"), int):
            out["dirty_sync_count"] = ram["dirty-sync-count"]
    if isinstance(info.get("error-desc"), str):
        out["error"] = info["error-desc"]
    return out


def is_migration(status: str | set[str]) -> EventFilter:
    """Filter for ``MIGRATION`` events whose status is ``status`` (or one of them)."""
    wanted = {status} if isinstance(status, str) else status
    return lambda e: e.get("event") == "MIGRATION" and e.get("data", {}).get("status") in wanted


def is_event(name: str) -> EventFilter:
    return lambda e: e.get("event") == name


class Monitor:
    """One QMP connection to one QEMU (``label`` names it in every error)."""

    def __init__(self, label: str, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.label = label
        self.path = path
        self.events: list[Event] = []
        """Every event received so far, in order."""
        self._loop = loop
        self._client = QMPClient(label)

    def __repr__(self) -> str:
        return f"QMP of {self.label} ({self.path})"

    def connect(self, timeout_s: float = 5.0) -> None:
        self._run(self._client.connect(str(self.path)), timeout_s, "connect")

    def cmd(self, name: str, timeout_s: float = 10.0, **args: Any) -> Any:
        """Execute ``name``; its ``return`` value. GuestError names the command and QEMU's
        error class and text."""
        return self._run(self._client.execute(name, args or None), timeout_s, name)

    def wait_event(self, match: EventFilter, timeout_s: float, what: str,
                   since: int = 0, check: Callable[[], None] | None = None) -> Event:
        """The first event at index >= ``since`` that ``match``es, waiting up to
        ``timeout_s``; WaitTimeout names the events seen. ``check`` runs every
        :data:`CHECK_EVERY_S` while waiting and may raise (e.g. a QEMU died)."""
        loop = self._loop
        deadline = loop.time() + timeout_s
        i = since
        while True:
            while i < len(self.events):
                if match(self.events[i]):
                    return self.events[i]
                i += 1
            left = deadline - loop.time()
            if left <= 0:
                seen = [_brief(e) for e in self.events[since:]][-8:]
                raise WaitTimeout(f"{what} ({self.label})", timeout_s,
                                  f"events {seen or 'none'}")
            if check is not None:
                check()
                left = min(left, CHECK_EVERY_S)
            self._pull(left)

    def find(self, match: EventFilter, since: int = 0) -> Event | None:
        """The first event received so far at index >= ``since`` that ``match``es."""
        return next((e for e in self.events[since:] if match(e)), None)

    def pull(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for at least one event (all buffered ones are read)."""
        self._pull(timeout_s)

    def drain(self) -> None:
        """Read the events already buffered, without waiting."""
        self._pull(0.0)

    def close(self) -> None:
        with contextlib.suppress(QMPError, OSError, EOFError, TimeoutError):
            self._loop.run_until_complete(asyncio.wait_for(self._client.disconnect(), 2.0))

    # --- internals -----------------------------------------------------------------

    def _pull(self, timeout_s: float) -> None:
        async def get() -> None:
            if timeout_s <= 0:
                await asyncio.sleep(0)
            else:
                try:
                    ev = await asyncio.wait_for(self._client.events.get(), timeout_s)
                except TimeoutError:
                    return
                self.events.append(dict(ev))
            self.events.extend(dict(x) for x in self._client.events.clear())

        self._run(get(), timeout_s + 1.0, "reading events")

    def _run(self, coro: Any, timeout_s: float, what: str) -> Any:
        try:
            return self._loop.run_until_complete(asyncio.wait_for(coro, timeout_s))
        except ExecuteError as e:
            raise GuestError(f"{self.label}: QMP {what} failed: {e.error_class}: {e}") from e
        except TimeoutError as e:
            raise GuestError(
                f"{self.label}: QMP {what} got no answer within {timeout_s:.1f} s on "
                f"{self.path}; is another client connected, or QEMU wedged?"
            ) from e
        except (QMPError, OSError, EOFError) as e:
            raise GuestError(
                f"{self.label}: QMP {what} on {self.path} failed: {type(e).__name__}: {e}"
            ) from e


def _brief(e: Event) -> str:
    data = e.get("data") or {}
    detail = data.get("status") or data.get("reason") or ""
    return f"{e.get('event')}{'(' + str(detail) + ')' if detail else ''}"
