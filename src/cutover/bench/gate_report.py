"""Report section about the destination TAP gate (``--activation pre-gated``).

Pure functions of a :class:`~cutover.bench.results.BenchResult` (unit-tested). Per group
of runs that closed a gate: how long after the source's STOP the gate opened (the
``tap-gate.opened`` timeline event minus ``guest.stop``, QEMU's own STOP timestamp: the
window in which probes are dropped instead of queued), how many frames the gate dropped
(the stale clones that no longer reach the resumed guest), and what opened it (the
source's STOP, or a backstop). Times in ms.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from cutover.bench.results import BenchResult, RunResult
from cutover.migration.tap_gate import CLOSED, OPENED, dropped_in, opened_by

GATE_HEADERS = ("strategy", "condition", "n", "open after STOP ms", "min ms", "max ms",
                "frames dropped", "opened by")


def _condition(run: RunResult) -> str:
    return f"stall={run.stall} load={run.load} activation={run.activation} gate={run.gate}"


def open_after_stop_ms(run: RunResult) -> float | None:
    """From the source's STOP to the gate's opening, by the run's timeline; None if the
    run has no opened gate or no STOP."""
    stop = next((e.t_ms for e in run.timeline if e.event == "guest.stop"), None)
    opened = next((e.t_ms for e in run.timeline if e.event == OPENED), None)
    if stop is None or opened is None:
        return None
    return opened - stop


def gate_rows(result: BenchResult) -> list[list[str]]:
    """One row per (strategy, condition) group of successful runs that closed a gate
    (a run whose gate was gone before it was opened counts as ``none left``)."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in result.runs:
        if r.ok and any(e.event == CLOSED for e in r.timeline):
            groups.setdefault((r.strategy, _condition(r)), []).append(r)
    rows = []
    for (strategy, cond), runs in groups.items():
        latencies = [v for v in map(open_after_stop_ms, runs) if v is not None]
        details = [e.detail for r in runs for e in r.timeline if e.event == OPENED]
        dropped = [d for d in map(dropped_in, details) if d is not None]
        by: dict[str, int] = {}
        for detail in details:
            by[opened_by(detail)] = by.get(opened_by(detail), 0) + 1
        gone = sum(not any(e.event == OPENED for e in r.timeline) for r in runs)
        if gone:
            by["none left (the gate was removed before it opened)"] = gone
        rows.append([strategy, cond, str(len(runs)), _num(_median(latencies)),
                     _num(min(latencies, default=None)), _num(max(latencies, default=None)),
                     _num(_median([float(d) for d in dropped]), 0),
                     ", ".join(f"{k} x{v}" for k, v in sorted(by.items()))])
    return rows


def gate_section(result: BenchResult) -> list[str]:
    """Markdown lines for report.md (nothing when no run closed a gate)."""
    rows = gate_rows(result)
    if not rows:
        return []
    lines = ["| " + " | ".join(GATE_HEADERS) + " |",
             "|" + "|".join(" --- " if i < 2 or i == 7 else " ---: "
                            for i in range(len(GATE_HEADERS))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return ["## The destination TAP gate", "",
            "Medians over the successful runs that closed a gate (`pre-gated`). `open after "
            "STOP`: from the source's STOP (QEMU's timestamp) to the gate's opening - probes "
            "sent to the destination in that window are dropped, not queued; `frames "
            "dropped`: what the gate dropped while closed (stale clones that the resumed "
            "guest no longer answers); `opened by`: the source's STOP or a backstop (`none "
            "left`: something removed the gate before it opened).", "",
            *lines, ""]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _num(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"
