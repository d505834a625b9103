"""Render a bench for people: ``bench.json``, two plots and ``report.md``.

Figures are drawn on a :class:`~matplotlib.figure.Figure` bound to the Agg canvas
directly, never through ``pyplot``: that needs no display, keeps no global figure
state, and does not change the backend for whoever imported us. This module never
prints; the CLI prints :func:`summary_table`.

``bench.json`` is written first, so that the raw data survives even if plotting
fails on some odd input.
"""

from __future__ import annotations

import json
import re
import statistics
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter
from rich.table import Table

from cutover.bench import fault_report
from cutover.bench.detection import detection_section
from cutover.bench.gate_report import gate_section
from cutover.bench.guest_report import guest_section
from cutover.bench.results import BenchResult, RunResult
from cutover.bench.stats import (
    GroupStats,
    key_for,
    run_condition,
    run_key,
    strategy_ratios,
    summarize,
    varying_fields,
)
from cutover.bench.versions import markdown_section

SUMMARY_HEADERS: tuple[str, ...] = (
    "strategy", "condition", "n", "blackout ms", "min ms", "max ms", "loss outage ms",
    "lost", "max RTT ms", "dups", "ready-wait ms", "migration ms", "failed",
)  # fmt: skip

HOW_MEASURED = (
    "A client on a third chassis, neither source nor destination, sends ICMP echo "
    "requests to the migrating VM at a fixed interval and timestamps every reply. "
    "**blackout** (time-derived): the longest interval, by arrival time, in which the "
    "client received no reply at all - the first replies of all probes sorted by receive "
    "time, the largest gap between neighbours; a late reply does not end a silence before "
    "it arrives, and a delay spike without loss counts. It is what a user of the VM feels; "
    "with no loss it is about one probe interval, never 0. **loss outage** (loss-derived): "
    "probes lost x probe interval; smaller than the blackout when replies were delayed "
    "rather than lost. **max RTT**: the largest round-trip time of an answered probe. "
    "**duplicates**: replies beyond the first for one probe (traffic cloned to two "
    "chassis). A run is failed, not measured, when before it the SB did not match the "
    "site or the client got no replies, or when its longest silence ran into the end of "
    "the capture (the VM never answered again: the blackout is only a lower bound). "
    "Strategies are run alternately, repeatedly, on the same lab; every number above is a "
    "median over the successful runs of one strategy under one condition; failed runs are "
    "listed but excluded. Absolute values depend on the machine: quote ratios between "
    "strategies of the same bench. Definitions and tests: docs/metrics.md."
)

# 11 shapes against 10 colours: (colour, shape) pairs do not repeat before 110 event names.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "d")
_NUMERIC = re.compile(r"-|-?\d+(\.\d+)?")
_STAGGER = (-0.2, 0.0, 0.2)
_LOSS_COLOR = "#d62728"


@dataclass(frozen=True)
class ReportPaths:
    json: Path
    blackout_png: Path
    timeline_png: Path
    markdown: Path


def write_report(result: BenchResult, out_dir: Path) -> ReportPaths:
    """Write the four report files into ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(
        json=out_dir / "bench.json",
        blackout_png=out_dir / "blackout.png",
        timeline_png=out_dir / "timeline.png",
        markdown=out_dir / "report.md",
    )
    result.save(paths.json)
    _save(_blackout_figure(result), paths.blackout_png)
    _save(_timeline_figure(result), paths.timeline_png)
    paths.markdown.write_text(render_markdown(result, paths))
    return paths


# --- tables --------------------------------------------------------------------------------


def summary_rows(result: BenchResult) -> list[list[str]]:
    """The summary table as strings, one row per (strategy, condition) group."""
    rows = []
    for g in summarize(result.runs, key_for(result.runs)):
        rows.append(
            [
                g.get("strategy"),
                _condition_text(g.condition()),
                str(g.n),
                _num(g.blackout_median_ms),
                _num(g.blackout_min_ms),
                _num(g.blackout_max_ms),
                _num(g.loss_outage_median_ms),
                _count(g.probes_lost_median),
                _num(g.max_rtt_median_ms),
                _count(g.duplicates_median),
                _num(g.ready_wait_median_ms),
                _num(g.migration_median_ms),
                str(g.failed),
            ]
        )
    return rows


def summary_table(result: BenchResult) -> Table:
    """The summary as a rich table, for the CLI to print."""
    ok = sum(r.ok for r in result.runs)
    table = Table(
        title=f"Blackout per strategy: median of each row's successful runs ({ok} in all; "
        f"min and max of the blackout beside it), {_interval_text(result.runs)}",
    )
    for i, header in enumerate(SUMMARY_HEADERS):
        table.add_column(header, justify="left" if i < 2 else "right")
    for row in summary_rows(result):
        table.add_row(*row, style="red" if row[2] == "0" else None)
    return table


def render_markdown(result: BenchResult, paths: ReportPaths) -> str:
    groups = summarize(result.runs, key_for(result.runs))
    failed = [r for r in result.runs if not r.ok]
    out = [
        f"# cutover bench, {result.started_at}",
        "",
        f"{len(result.runs)} migrations ({len(failed)} failed), {_interval_text(result.runs)}.",
        "",
        "## Environment",
        "",
        *_md_table(["component", "version"], [[k, v] for k, v in result.environment.items()]),
        "",
        "## Parameters",
        "",
        *_md_table(["parameter", "value"], [[k, _param(v)] for k, v in result.params.items()]),
        "",
        "## Summary",
        "",
        "Times in ms. Every column but `n`, `min ms`, `max ms` and `failed` is a median over "
        "the successful runs (`dups`: duplicate replies); `failed` runs are excluded.",
        "",
        *_md_table(list(SUMMARY_HEADERS), summary_rows(result)),
        "",
        *markdown_section(result),
        *fault_report.markdown_section(result),
        *guest_section(result),
        *gate_section(result),
        *detection_section(result),
        "## Ratios of median blackout between strategies",
        "",
        *_ratio_lines(groups),
        "",
        "## Blackout per run",
        "",
        f"![Blackout per strategy and condition]({paths.blackout_png.name})",
        "",
        "## Timeline of each migration",
        "",
        f"![Timeline of each migration]({paths.timeline_png.name})",
        "",
    ]
    if failed:
        out += ["## Failed runs", ""]
        key = key_for(result.runs)
        out += [
            f"- {_run_label(r)} ({_condition_text(run_condition(r, key))}): {r.error}"
            for r in failed
        ]
        out.append("")
    out += ["## How measured", "", HOW_MEASURED, ""]
    return "\n".join(out)


def _ratio_lines(groups: Sequence[GroupStats]) -> list[str]:
    rows = []
    for r in strategy_ratios(groups):
        factor = f"n/a ({r.faster}: 0 ms)" if r.value is None else f"{r.value:.1f}x"
        rows.append(
            [
                _condition_text(r.condition),
                f"{r.slower} / {r.faster}",
                factor,
                f"{_num(r.slower_median_ms)} / {_num(r.faster_median_ms)}",
            ]
        )
    if not rows:
        return ["No condition has two strategies with successful runs; nothing to compare."]
    return _md_table(["condition", "strategies", "ratio", "medians ms"], rows)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    if not rows:
        return ["_(none recorded)_"]
    # Right-align columns whose cells all look numeric, as a reader compares them.
    align = [
        "---:" if rows and all(_NUMERIC.fullmatch(r[i]) for r in rows) else "---"
        for i in range(len(headers))
    ]
    return [line(headers), line(align), *(line(r) for r in rows)]


# --- figures -------------------------------------------------------------------------------


def _blackout_figure(result: BenchResult) -> Figure:
    """Each run as a dot, each group's median as a black bar, on a symlog axis.

    Symlog rather than log because a lossless strategy measures 0 ms, which a log axis
    cannot show; above 1 ms it is logarithmic, so 5 ms and 3000 ms both stay readable.
    """
    if not result.runs:
        return _placeholder("No runs in this bench: nothing to plot")
    key = key_for(result.runs)
    groups = summarize(result.runs, key)
    strategies = list(dict.fromkeys(g.get("strategy") for g in groups))
    conditions = list(dict.fromkeys(g.condition() for g in groups))
    varying = varying_fields(conditions)
    slot = len(strategies) + 1  # one empty slot separates condition groups
    colors = _colors(strategies, "tab10")
    fig = Figure(figsize=(max(6.5, 2.2 + 0.55 * slot * len(conditions)), 5.0),
                 layout="constrained")
    ax = fig.add_subplot()
    for g in groups:
        x = conditions.index(g.condition()) * slot + strategies.index(g.get("strategy"))
        ys = [r.blackout_ms for r in result.runs if r.ok and run_key(r, key) == g.values]
        xs = [x + (0.44 * i / (len(ys) - 1) - 0.22 if len(ys) > 1 else 0) for i in range(len(ys))]
        ax.scatter(xs, ys, s=22, alpha=0.75, color=colors[g.get("strategy")], lw=0, zorder=3)
        if g.blackout_median_ms is not None:
            ax.hlines(g.blackout_median_ms, x - 0.36, x + 0.36, color="black", lw=2.2, zorder=4)
            ax.annotate(_num(g.blackout_median_ms), (x + 0.38, g.blackout_median_ms), fontsize=7)
        if g.failed:
            ax.annotate(f"{g.failed} failed", (x, 0.99), xycoords=("data", "axes fraction"),
                        ha="center", va="top", fontsize=7, color=_LOSS_COLOR)  # fmt: skip
    for ci in range(1, len(conditions)):
        ax.axvline(ci * slot - 1, color="0.8", lw=0.8)
    handles: list[Any] = [Patch(color=colors[s], label=s) for s in strategies]
    handles.append(Line2D([], [], color="black", lw=2.2, label="median"))
    if interval := _interval(result.runs):
        ax.axhline(interval, color="0.45", ls=":", lw=1)
        handles.append(
            Line2D([], [], color="0.45", ls=":", label=f"probe interval {interval:g} ms")
        )
    ax.set_yscale("symlog", linthresh=1.0, linscale=0.5)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    top = max((r.blackout_ms for r in result.runs if r.ok), default=1.0)
    ax.set_ylim(-0.3, max(10.0, top * 3))
    ax.set_ylabel("client-visible blackout (ms, symlog)")
    ax.grid(axis="y", color="0.9")
    ax.set_xticks([ci * slot + (len(strategies) - 1) / 2 for ci in range(len(conditions))])
    ax.set_xticklabels(["\n".join(f"{f}={v}" for f, v in c if f in varying) or "all runs"
                        for c in conditions], fontsize=8)  # fmt: skip
    ax.set_xlim(-0.7, len(conditions) * slot - 1.3)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1, 1), frameon=False)
    same = [f"{f}={v}" for f, v in conditions[0] if f not in varying] if conditions else []
    failed = len(result.runs) - sum(r.ok for r in result.runs)
    _title(fig, "Client-visible blackout per migration strategy",
           f"{_interval_text(result.runs)}, {len(result.runs)} runs ({failed} failed)"
           + (f"; {', '.join(same)}" if same else ""))  # fmt: skip
    return fig


def _timeline_figure(result: BenchResult) -> Figure:
    """One lane per run, a marker per event, the silences (no reply) shaded behind.

    Events are staggered vertically by name so that steps a few ms apart (invisible
    at a 3 s scale) do not hide each other; lanes are grouped by condition.
    """
    if not result.runs:
        return _placeholder("No runs in this bench: no timeline")
    key = key_for(result.runs)
    order = {c: i for i, c in enumerate(dict.fromkeys(run_condition(r, key) for r in result.runs))}
    runs = sorted(result.runs, key=lambda r: order[run_condition(r, key)])  # stable sort
    conditions = [run_condition(r, key) for r in runs]
    varying = varying_fields(conditions)
    events = _events_in_time_order(runs)
    colors = _colors(events, "tab10")
    # tall enough for one lane per run AND for the legend beside them (one row per event)
    height = max(2.2 + 0.32 * len(runs), 1.4 + 0.19 * (len(events) + 2))
    fig = Figure(figsize=(11.0, height), layout="constrained")
    ax = fig.add_subplot()
    for lane, run in enumerate(runs):
        for start, end in _silences(run):
            ax.broken_barh([(start, end - start)], (lane - 0.4, 0.8), color=_LOSS_COLOR, alpha=0.2)
        if lane and conditions[lane] != conditions[lane - 1]:
            ax.axhline(lane - 0.5, color="0.55", lw=0.8)
    for i, name in enumerate(events):
        hits = [
            (e.t_ms, lane) for lane, r in enumerate(runs) for e in r.timeline if e.event == name
        ]
        marker = _MARKERS[i % len(_MARKERS)]
        ax.scatter([t for t, _ in hits], [lane + _STAGGER[i % 3] for _, lane in hits],
                   s=70 if marker == "*" else 38, color=colors[name], marker=marker, zorder=3,
                   edgecolors="white", linewidths=0.4, label=name)  # fmt: skip
    ax.axvline(0, color="0.7", lw=0.8, zorder=1)
    ax.set_yticks(range(len(runs)))
    ax.set_yticklabels([_run_label(r) + "".join(f"  {f}={v}" for f, v in c if f in varying)
                        + ("  (failed)" if not r.ok else "")
                        for r, c in zip(runs, conditions, strict=True)], fontsize=8)  # fmt: skip
    for tick, run in zip(ax.get_yticklabels(), runs, strict=True):
        tick.set_color("black" if run.ok else _LOSS_COLOR)
    ax.set_ylim(len(runs) - 0.5, -0.5)
    ax.set_xlabel("ms since migration start")
    ax.grid(axis="x", color="0.92")
    handles = ax.get_legend_handles_labels()[0]
    if any(_silences(r) for r in runs):
        handles.append(Patch(color=_LOSS_COLOR, alpha=0.2, label="client heard no reply"))
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1, 1),
                  frameon=False, title="events, in typical order", title_fontsize=8)  # fmt: skip
    _title(fig, f"Migration timelines: {len(runs)} runs, {_interval_text(result.runs)}")
    return fig


def _silences(run: RunResult) -> list[tuple[float, float]]:
    """``extra["silences"]`` as numbers; malformed entries are skipped, not fatal,
    because ``extra`` is free-form and a report must not die on one odd run."""
    raw = run.extra.get("silences")
    windows = []
    for w in raw if isinstance(raw, list) else []:
        if isinstance(w, list | tuple) and len(w) == 2 and all(_is_number(v) for v in w):
            windows.append((float(w[0]), float(w[1])))
    return windows


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _events_in_time_order(runs: Sequence[RunResult]) -> list[str]:
    """Event names ordered by their median time, so the legend reads like a story."""
    times: dict[str, list[float]] = {}
    for run in runs:
        for ev in run.timeline:
            times.setdefault(ev.event, []).append(ev.t_ms)
    return sorted(times, key=lambda e: statistics.median(times[e]))


def _colors(names: Sequence[str], palette: str) -> dict[str, Any]:
    """Colours cycling through ``palette``; markers tell apart names sharing a colour."""
    cmap = colormaps[palette]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _title(fig: Figure, *lines: str, fontsize: float = 10.0) -> None:
    """A figure-wide title, each line wrapped to the figure's width.

    A title on the axes is centred over the plot area, not the figure: a line longer than
    the axes (a legend beside them takes the rest) ran off the figure's left edge."""
    width = max(20, int(fig.get_figwidth() * 72 / (fontsize * 0.6)))
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in lines), fontsize=fontsize)


def _placeholder(message: str) -> Figure:
    """A small figure saying why there is no plot: a report never links a missing image."""
    fig = Figure(figsize=(6.0, 1.5))
    fig.text(0.5, 0.5, message, ha="center", va="center")
    return fig


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)


# --- small formatting helpers shared by tables and figures ---------------------------------


def _condition_text(condition: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{f}={v}" for f, v in condition) or "-"


def _run_label(run: RunResult) -> str:
    return f"{run.strategy} #{run.run_index}"


def _interval(runs: Sequence[RunResult]) -> float | None:
    values = sorted({r.probe_interval_ms for r in runs})
    return values[0] if len(values) == 1 else None


def _interval_text(runs: Sequence[RunResult]) -> str:
    values = sorted({r.probe_interval_ms for r in runs})
    if not values:
        return "no probes"
    return f"ICMP probe every {' / '.join(f'{v:g}' for v in values)} ms"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}"


def _count(value: float | None) -> str:
    """A median of counts: whole unless it falls between two (an even number of runs)."""
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
