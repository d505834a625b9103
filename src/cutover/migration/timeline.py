"""Timestamped events of one migration, shared with observers (e.g. fault injection).

Times are wall-clock ms so that they line up with guest events (RARPs), prober samples
and ``ovn-installed-ts`` written by ovn-controller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cutover.ovsdb.connection import now_ms

Observer = Callable[[str], None]
"""Called with each event name as it is marked (synchronously, in the migration thread)."""


@dataclass(frozen=True)
class Event:
    at_ms: float
    name: str
    detail: str = ""


class Timeline:
    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self.t0_ms = now_ms()
        self._events: list[Event] = []
        self._observers = list(observers)

    def mark(self, name: str, detail: str = "", at_ms: float | None = None) -> float:
        """Record ``name`` (now, or at ``at_ms`` for events seen elsewhere) and tell the
        observers. Returns the event's wall time."""
        at = now_ms() if at_ms is None else at_ms
        self._events.append(Event(at, name, detail))
        for observer in self._observers:
            observer(name)
        return at

    def first(self, name: str) -> Event | None:
        return next((e for e in self.events if e.name == name), None)

    @property
    def events(self) -> list[Event]:
        return sorted(self._events, key=lambda e: e.at_ms)

    def relative(self) -> list[tuple[float, str, str]]:
        """(ms since the migration started, name, detail), in time order."""
        return [(round(e.at_ms - self.t0_ms, 3), e.name, e.detail) for e in self.events]
