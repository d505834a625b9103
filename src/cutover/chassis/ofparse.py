"""Parsing ``ovs-ofctl --no-stats --no-names dump-flows`` output into :class:`Flow` values.

Kept apart from :mod:`cutover.chassis.flows` (which runs ``ovs-ofctl`` and judges a VIF's
physical flows) so that the classifiers of other flows (:mod:`cutover.chassis.lookup`,
:mod:`cutover.chassis.tunnels`) share one parser without importing the process side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Flow:
    table: int
    priority: int
    match: dict[str, str]
    """``field -> value``; bare keywords (``ip``, ``rarp``) map to ``""``."""
    actions: str

    @property
    def is_drop(self) -> bool:
        return self.actions in ("", "drop")

    def outputs_to(self, ofport: int) -> bool:
        return re.search(rf"(?:^|,)output:{ofport}(?:,|$)", self.actions) is not None


_STAT_KEYS = frozenset({
    "cookie", "duration", "n_packets", "n_bytes", "idle_age", "hard_age", "idle_timeout",
    "hard_timeout", "importance", "reset_counts", "send_flow_rem", "no_packet_counts",
    "no_byte_counts",
})
"""Per-flow metadata ``dump-flows`` prints before the match (with or without --no-stats)."""


def parse_flow(line: str) -> Flow | None:
    """One line of ``ovs-ofctl --no-stats --no-names dump-flows`` (None: not a flow)."""
    text = line.strip()
    if not text.startswith("cookie=") and "actions=" not in text:
        return None
    left, sep, actions = text.partition(" actions=")
    if not sep:
        return None
    table, priority = 0, 32768
    match: dict[str, str] = {}
    for token in left.split(", "):
        key, _, value = token.partition("=")
        if key in _STAT_KEYS:
            continue
        if key == "table" and "," not in token:
            table = int(value)
            continue
        for field in token.split(","):
            fkey, _, fvalue = field.partition("=")
            if fkey == "priority":
                priority = int(fvalue)
            elif fkey:
                match[fkey] = fvalue
    return Flow(table, priority, match, actions.strip())


def parse_flows(text: str) -> list[Flow]:
    return [f for f in (parse_flow(line) for line in text.splitlines()) if f is not None]


def match_number(value: str | None) -> int | None:
    """An exact numeric match field (``reg15=0x2``, ``metadata=3``); None if absent or
    masked (a masked match is not about one port)."""
    if value is None or "/" in value:
        return None
    try:
        return int(value, 0)
    except ValueError:
        return None
