"""Report sections about the guest: the floor subtracted, and what QEMU itself says.

Pure functions of a :class:`~cutover.bench.results.BenchResult` (unit-tested): the
blackout a strategy adds on top of the floor (``bench --floor``), and per group the
medians of the guest's own figures from each run's ``extra`` (``guest_pause_ms``: the
source's STOP to the destination's RESUME by QEMU's timestamps; QEMU's
``qemu_downtime_ms``, ``qemu_migration_ms``, ``ram_transferred_mb``). Times in ms.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from rich.table import Table

from cutover.bench.results import BenchResult, RunResult

FLOOR = "floor"
GUEST_FIGURES = ("guest_pause_ms", "qemu_downtime_ms", "qemu_migration_ms",
                 "ram_transferred_mb", "switchover_ms")
FLOOR_HEADERS = ("strategy", "condition", "n", "median blackout ms", "floor ms",
                 "blackout - floor ms")
GUEST_HEADERS = ("strategy", "condition", "n", *GUEST_FIGURES, "blackout - guest_pause_ms")

Group = tuple[str, str]
"""(strategy, condition text)."""


def _condition(run: RunResult) -> str:
    return f"stall={run.stall} load={run.load} activation={run.activation} gate={run.gate}"


def _groups(runs: Sequence[RunResult]) -> dict[Group, list[RunResult]]:
    out: dict[Group, list[RunResult]] = {}
    for r in runs:
        if r.ok:
            out.setdefault((r.strategy, _condition(r)), []).append(r)
    return out


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def floor_median(result: BenchResult) -> float | None:
    """Median blackout of the floor runs, or None without ``--floor``."""
    return _median([r.blackout_ms for r in result.runs if r.ok and r.strategy == FLOOR])


def floor_rows(result: BenchResult) -> list[list[str]]:
    """One row per strategy group: its median blackout, the floor, the difference."""
    floor = floor_median(result)
    if floor is None:
        return []
    rows = []
    for (strategy, cond), runs in _groups(result.runs).items():
        if strategy == FLOOR:
            continue
        med = _median([r.blackout_ms for r in runs])
        assert med is not None
        rows.append([strategy, cond, str(len(runs)), _num(med), _num(floor),
                     _num(med - floor)])
    return rows


def guest_rows(result: BenchResult) -> list[list[str]]:
    """Medians of the guest's own figures per group; [] when no run has any."""
    rows = []
    for (strategy, cond), runs in _groups(result.runs).items():
        medians = [_median([float(r.extra[k]) for r in runs
                            if isinstance(r.extra.get(k), int | float)]) for k in GUEST_FIGURES]
        medians.append(_median([r.blackout_ms - float(r.extra["guest_pause_ms"]) for r in runs
                                if isinstance(r.extra.get("guest_pause_ms"), int | float)]))
        if any(m is not None for m in medians):
            rows.append([strategy, cond, str(len(runs)), *(_num(m) for m in medians)])
    return rows


def guest_section(result: BenchResult) -> list[str]:
    """Markdown lines for report.md (nothing when there is nothing to say)."""
    out: list[str] = []
    floor = floor_rows(result)
    if floor:
        out += ["## Blackout above the floor", "",
                "The floor is the same QEMU migration between two pre-attached TAPs on a "
                "plain Linux bridge (no OVN), probed the same way, in this bench.", "",
                *_md(FLOOR_HEADERS, floor), ""]
    guest = guest_rows(result)
    if guest:
        out += ["## What the guest reports", "",
                "Medians. `guest_pause_ms`: source STOP -> destination RESUME by the "
                "hypervisor's own timestamps; `qemu_*`: QEMU's `query-migrate`; "
                "`switchover_ms`: from the migration's start to the destination's RESUME "
                "(the total migration time, whatever the gate overlapped); the last "
                "column is what the network adds to the guest's own pause, per run.", "",
                *_md(GUEST_HEADERS, guest), ""]
    return out


def floor_table(result: BenchResult) -> Table | None:
    rows = floor_rows(result)
    if not rows:
        return None
    table = Table(title="Blackout above the floor (same QEMU migration on a Linux bridge)")
    for i, h in enumerate(FLOOR_HEADERS):
        table.add_column(h, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _md(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(" --- " if i < 2 else " ---: " for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"
