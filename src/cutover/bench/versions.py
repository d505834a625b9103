"""One bench over several OVN versions: merge the per-version benches, compare them.

``cutover bench --ovn host --ovn 25.03`` runs the same plan on one lab per version, in
turn; each run carries the OVN version its ovn-controller reported (``RunResult.ovn``),
so the merged ``bench.json`` groups by version like by any other condition. This module
adds what only a version matrix needs: the merge, and a side-by-side table (per condition
and strategy: blackout, ready-wait, detection latency, SB writes, and which readiness
path each version took - port-ready's evidence names ``ovn-installed+flows`` or
``flows-only``, and the output table holding the port's flow).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from rich.table import Table

from cutover.bench.results import BenchResult, RunResult
from cutover.bench.stats import median_or_none

PATHS = ("ovn-installed+flows", "flows-only")
_TABLE_RE = re.compile(r"egress=True table=(\d+)")

METRICS = ("median blackout ms", "median ready-wait ms", "median detection ms",
           "median SB writes", "readiness path")


def merge(results: Sequence[BenchResult]) -> BenchResult:
    """The benches of several versions as one: runs concatenated, environment keys that
    differ joined as ``a | b`` (in version order), params of the first plus ``ovn``."""
    if not results:
        raise ValueError("nothing to merge")
    keys = list(dict.fromkeys(k for r in results for k in r.environment))
    environment = {}
    for k in keys:
        values = [r.environment.get(k, "-") for r in results]
        environment[k] = values[0] if len(set(values)) == 1 else " | ".join(values)
    params = {**results[0].params,
              "ovn": [r.environment.get("ovn_install", r.environment.get("ovn", "?"))
                      for r in results]}
    return BenchResult(started_at=results[0].started_at, environment=environment,
                       params=params, runs=[run for r in results for run in r.runs])


def versions(runs: Iterable[RunResult]) -> list[str]:
    """OVN versions in the order they ran."""
    return list(dict.fromkeys(r.ovn for r in runs))


def readiness_path(run: RunResult) -> str:
    """Which port-ready path a run took (``ovn-installed+flows``/``flows-only``), with the
    output table it found the port's flow in; '' for strategies without flow checks."""
    evidence = str(run.extra.get("evidence", ""))
    path = next((p for p in PATHS if p in evidence), "")
    table = _TABLE_RE.search(evidence)
    return f"{path} (t{table.group(1)})" if path and table else path


def _paths(runs: list[RunResult]) -> str:
    counts: dict[str, int] = {}
    for r in runs:
        if r.ok:
            p = readiness_path(r)
            if p:
                counts[p] = counts.get(p, 0) + 1
    return ", ".join(f"{p} x{n}" if len(counts) > 1 else p for p, n in counts.items()) or "-"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


Cell = Callable[[list[RunResult]], str]
"""One version's runs of one (condition, strategy) -> the text of a table cell."""


def _median(attr: str) -> Cell:
    return lambda runs: _num(median_or_none(getattr(r, attr) for r in runs if r.ok))


def comparison_rows(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: per (condition, strategy), each metric as ``v1 / v2 / ...`` in
    version order (failed runs excluded from the medians, counted in ``failed``)."""
    vers = versions(result.runs)
    cells: dict[tuple[str, str], dict[str, list[RunResult]]] = {}
    for r in result.runs:
        cond = f"{r.load}, stall={r.stall}, act={r.activation}"
        cells.setdefault((cond, r.strategy), {}).setdefault(r.ovn, []).append(r)
    headers = ["condition", "strategy", *(f"{m} ({' / '.join(vers)})" for m in METRICS),
               "failed"]
    rows = []
    for (cond, strategy), by_version in cells.items():
        def per(fn: Cell, by: dict[str, list[RunResult]] = by_version) -> str:
            return " / ".join(fn(by.get(v, [])) for v in vers)

        rows.append([cond, strategy, per(_median("blackout_ms")),
                     per(_median("ready_wait_ms")), per(_median("detection_latency_ms")),
                     per(_median("sb_writes")), per(_paths),
                     per(lambda runs: str(sum(not r.ok for r in runs)))])
    return headers, rows


def comparison_table(result: BenchResult) -> Table:
    """The side-by-side comparison for the CLI to print."""
    headers, rows = comparison_rows(result)
    table = Table(title=f"OVN versions side by side: {' / '.join(versions(result.runs))} "
                  "(medians)")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < 2 or "path" in h else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown_section(result: BenchResult) -> list[str]:
    """``## OVN versions side by side`` for report.md ([] for a single-version bench)."""
    if len(versions(result.runs)) < 2:
        return []
    headers, rows = comparison_rows(result)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [
        "## OVN versions side by side",
        "",
        "Each cell gives the versions in the order of the header, separated by ` / `. "
        "The readiness path is port-ready's (path-ready embeds it): `ovn-installed+flows` "
        "when the destination set `ovn-installed` for the additional chassis, `flows-only` "
        "when it did not within the grace; `tNN` is the OpenFlow table the port's output "
        "flow was found in (found, never assumed).",
        "",
        line(headers),
        line(["---", "---", *(["---:"] * 4), "---", "---:"]),
        *(line(r) for r in rows),
        "",
    ]
