"""The flows an ``ovs-ofctl monitor`` has reported: a live copy of a filtered flow table.

Why: a readiness verdict made from ``dump-flows`` costs a process start per dump (5-20 ms
on this shared 2-core machine, three of them per check), and the measured detection
latency paid for one or two such checks *after* the last event (docs/readiness.md,
"Where the detection latency goes"). The flow monitor already streams every change of
the watched flows, with their actions, from the moment it is armed (its initial reply
lists the flows already there): kept as a table, it gives the verdict at the event, with
no ``ovs-ofctl`` round trip on the critical path.

What the stream lacks: OVS 3.1 prints no priority in a flow update (checked on this
machine; OpenFlow 1.4/1.5 monitors neither), so a flow is identified here by (table,
match, actions). Flows that differ only in priority and actions (ovn-controller's rarp
block is a drop with the very match of the port's flow) stay apart by their actions; a
``MODIFIED`` that could belong to more than one flow of that (table, match), a delete of
a flow never reported, or a paused monitor (``NXT_FLOW_MONITOR_PAUSED``: the switch
dropped updates) make the copy *unknown*, and the caller falls back to ``dump-flows``.

An ``ovs-ofctl monitor`` line looks like
``event=ADDED table=0 cookie=0xc9c90db8 in_port=3 actions=load:0x3->NXM_NX_REG13[],...``;
a drop prints no ``actions=`` at all; a delete adds ``reason=delete``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from cutover.chassis.ofparse import Flow

UNKNOWN_PRIORITY = -1
"""The priority of a flow known from a monitor update (see the module docstring)."""

EVENTS = ("ADDED", "DELETED", "MODIFIED")
_META = frozenset({"reason", "cookie", "idle_timeout", "hard_timeout", "importance"})

FlowKey = tuple[int, tuple[tuple[str, str], ...], str]


@dataclass(frozen=True)
class FlowUpdate:
    event: str
    """``ADDED``, ``DELETED`` or ``MODIFIED`` (``ABBREV``, own changes, is not parsed)."""
    flow: Flow
    """``priority`` is :data:`UNKNOWN_PRIORITY`."""


def parse_update(line: str) -> FlowUpdate | None:
    """One ``ovs-ofctl monitor`` line (None: not a full flow update)."""
    text = line.strip()
    if not text.startswith("event="):
        return None
    left, _, actions = text.partition(" actions=")
    tokens = left.split()
    event = tokens[0].removeprefix("event=")
    if event not in EVENTS:
        return None
    table: int | None = None
    match: dict[str, str] = {}
    for token in tokens[1:]:
        key, _, value = token.partition("=")
        if key == "table":
            try:
                table = int(value)
            except ValueError:
                return None
            continue
        if key in _META:
            continue
        for field in token.split(","):
            fkey, _, fvalue = field.partition("=")
            if fkey:
                match[fkey] = fvalue
    if table is None:
        return None
    # a drop prints no actions in an update, "actions=drop" in a dump: one spelling
    return FlowUpdate(event, Flow(table, UNKNOWN_PRIORITY, match, actions.strip() or "drop"))


def _key(flow: Flow) -> FlowKey:
    return (flow.table, tuple(sorted(flow.match.items())), flow.actions)


class FlowState:
    """A live copy of the flows one monitor watches (thread-safe; see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flows: Counter[FlowKey] = Counter()
        self._complete = False
        self._initial: Counter[FlowKey] = Counter()
        self._lost: str | None = None
        self.changed_ms: float | None = None
        """When the last update was applied (wall ms): when the copy took its state."""

    def apply(self, update: FlowUpdate, at_ms: float, initial: bool = False) -> None:
        """``initial``: a line of the monitor's initial reply (a flow already there)."""
        key = _key(update.flow)
        with self._lock:
            self.changed_ms = at_ms
            if initial:
                self._initial[key] += 1
            if update.event == "ADDED":
                self._flows[key] += 1
            elif update.event == "DELETED":
                if self._flows[key] <= 0:
                    self._lose(f"a delete of a flow never reported: {update.flow}")
                    return
                self._flows[key] -= 1
                if self._flows[key] == 0:
                    del self._flows[key]
            else:  # MODIFIED: same table, match and priority; new actions
                same = [k for k in self._flows if k[:2] == key[:2]]
                if not same:
                    self._flows[key] += 1
                elif len(same) == 1 and self._flows[same[0]] == 1:
                    del self._flows[same[0]]
                    self._flows[key] += 1
                else:
                    self._lose(f"a modify of one of {len(same)} flows with the match of "
                               f"{update.flow} (the monitor prints no priority)")  # fmt: skip

    def _lose(self, why: str) -> None:
        if self._lost is None:
            self._lost = why

    def lose(self, why: str) -> None:
        """The copy can no longer be trusted (e.g. the monitor paused or exited)."""
        with self._lock:
            self._lose(why)

    def mark_complete(self) -> None:
        """The monitor's initial replies have all been applied."""
        with self._lock:
            self._complete = True

    def initial(self) -> list[Flow] | None:
        """The flows the monitor's initial reply listed: already there when it started
        (None: no reply yet)."""
        with self._lock:
            return _flows(self._initial) if self._complete else None

    @property
    def n_initial(self) -> int:
        """How many lines of the initial reply have been applied so far."""
        with self._lock:
            return sum(self._initial.values())

    @property
    def usable(self) -> bool:
        with self._lock:
            return self._complete and self._lost is None

    @property
    def lost(self) -> str | None:
        with self._lock:
            return self._lost

    def flows(self) -> list[Flow] | None:
        """The flows now (None while the copy is incomplete or lost)."""
        with self._lock:
            if not self._complete or self._lost is not None:
                return None
            return _flows(self._flows)


def _flows(counts: Counter[FlowKey]) -> list[Flow]:
    return [Flow(t, UNKNOWN_PRIORITY, dict(m), a)
            for (t, m, a), n in counts.items() for _ in range(n)]  # fmt: skip


def merged(states: Sequence[FlowState], initial: bool = False) -> list[Flow] | None:
    """The flows of several monitors' copies (one per filter), each flow once: a flow two
    filters match (e.g. the port's egress port security: ``reg15`` and its MAC) is in
    both copies. Per (table, match, actions) the larger count: each copy is exact for its
    own filter, and flows with one such key match the same filters. None if any copy is
    not usable. ``initial``: the flows that were there when the monitors started."""
    counts: Counter[FlowKey] = Counter()
    for state in states:
        flows = state.initial() if initial else state.flows()
        if flows is None:
            return None
        for key, n in Counter(_key(f) for f in flows).items():
            counts[key] = max(counts[key], n)
    return _flows(counts)
