"""Report section about faults and leftovers: what each fault did to each strategy.

A fault run has an *outcome* (``extra["outcome"]``): ``migrated``, ``rolled-back`` (the
migration aborted before the switchover and undid itself: the VM stayed on its source),
``failed`` or ``switched-over-incomplete``; and every run has a leftover scan
(``extra["leftovers"]``, :mod:`cutover.bench.leftovers`). Blackout and probes lost are
medians over the runs without an error, whatever their outcome: a rolled-back run's
blackout is what the client saw while the migration was tried and undone. Pure functions
of a :class:`~cutover.bench.results.BenchResult` (unit-tested).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from rich.table import Table

from cutover.bench.results import BenchResult, RunResult

FAULT_HEADERS = ("fault", "strategy", "runs", "outcomes", "median blackout ms",
                 "max blackout ms", "median probes lost", "median ready-wait ms",
                 "leftover scan", "NB/SB reconnects")


def _outcome(run: RunResult) -> str:
    outcome = str(run.extra.get("outcome", "migrated" if run.ok else "failed"))
    return outcome if run.ok else f"{outcome} (error)"


def leftovers_clean(run: RunResult) -> bool | None:
    """The run's leftover scan: True clean, False not, None not scanned (older files)."""
    scan = run.extra.get("leftovers")
    if not isinstance(scan, dict):
        return None
    return bool(scan.get("clean"))


def _groups(runs: Sequence[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    out: dict[tuple[str, str], list[RunResult]] = {}
    for r in runs:
        out.setdefault((r.fault, r.strategy), []).append(r)
    return out


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def fault_rows(result: BenchResult) -> list[list[str]]:
    """One row per (fault, strategy); [] when the bench injected no fault."""
    if all(r.fault == "none" for r in result.runs):
        return []
    rows = []
    for (fault, strategy), runs in _groups(result.runs).items():
        ok = [r for r in runs if r.ok]
        outcomes: dict[str, int] = {}
        for r in runs:
            outcomes[_outcome(r)] = outcomes.get(_outcome(r), 0) + 1
        scans = [leftovers_clean(r) for r in runs]
        scanned = [s for s in scans if s is not None]
        clean = (f"clean {sum(scanned)}/{len(scanned)}" if scanned else "not scanned")
        nb = [float(r.extra.get("reconnects", {}).get("nb", 0)) for r in runs]
        sb = [float(r.extra.get("reconnects", {}).get("sb", 0)) for r in runs]
        rows.append([
            fault, strategy, str(len(runs)),
            ", ".join(f"{n} {o}" for o, n in outcomes.items()),
            _num(_median([r.blackout_ms for r in ok])),
            _num(max((r.blackout_ms for r in ok), default=None)),
            _num(_median([float(r.probes_lost) for r in ok])),
            _num(_median([r.ready_wait_ms for r in ok if r.extra.get("outcome") == "migrated"])),
            clean,
            f"{_median(nb) or 0:g}/{_median(sb) or 0:g}",
        ])  # fmt: skip
    return rows


def fault_table(result: BenchResult) -> Table | None:
    rows = fault_rows(result)
    if not rows:
        return None
    table = Table(title="Faults: outcome, blackout and leftovers per fault and strategy")
    for i, header in enumerate(FAULT_HEADERS):
        table.add_column(header, justify="left" if i < 4 or i == 8 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_section(result: BenchResult) -> list[str]:
    rows = fault_rows(result)
    out: list[str] = []
    if rows:
        out += ["## Faults", "",
                "Outcome per run (`rolled-back`: aborted before the switchover, VM kept on "
                "its source); blackout, probes lost and ready-wait are medians over runs "
                "without an error (ready-wait over the migrated ones); leftover scan after "
                "every run (NB options, SB bindings and Chassis_Private keys, OVS ports and "
                "TAPs on every chassis, stray guests, lab processes, paused controllers).",
                "", *_md_table(list(FAULT_HEADERS), rows), ""]
    dirty = [r for r in result.runs if leftovers_clean(r) is False]
    if dirty:
        out += ["## Leftovers found", ""]
        out += [f"- run {r.run_index} {r.strategy} ({r.fault}): "
                + "; ".join(r.extra["leftovers"].get("items", [])) for r in dirty]
        out.append("")
    return out


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(headers), line(["---"] * len(headers)), *(line(r) for r in rows)]
