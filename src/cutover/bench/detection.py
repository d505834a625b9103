"""Where the detection latency goes: the hops from ``ovn-installed-ts`` to the orchestrator
seeing the verdict, per strategy and condition, read from each run's timeline.

``detection_latency_ms`` (docs/metrics.md) is one number per run: the orchestrator's
``<strategy>.seen`` minus the ``ovn-installed-ts`` the destination's ovn-controller
stamped. The port check's marks (:mod:`cutover.chassis.port_watch`, published with the
agent's verdict) place every hop on the same clock, so the report can say which hop a
median is made of:

- ``ovn-installed``: the destination's agent (or the in-process watch) sees
  ``ovn-installed=true`` in its local Open_vSwitch DB;
- ``claim``: it sees the SB claim (``Port_Binding.additional_chassis``);
- ``flows``: the port's flows were complete on br-int (the flow monitor's update that
  completed them);
- ``verdict``: the check decided (``port-ready.on-chassis``; through an agent only);
- ``publish``: the agent handed its verdict on: to a pending long poll, then to its SB
  write (through an agent only);
- ``seen``: the orchestrator saw the verdict, by whichever channel was first = the
  detection latency (the evidence names the channel).

Each column is the median, over the runs that have that mark, of (mark - ovn-installed-ts)
in ms; a negative value is a hop that happened before the stamp (e.g. the SB claim, which
can be committed, and reach the agent, before ovn-controller stamps ``ovn-installed``).
"""

from __future__ import annotations

from collections.abc import Sequence

from cutover.bench.results import BenchResult, RunResult
from cutover.bench.stats import group_runs, key_for, median_or_none, run_condition

HOPS: tuple[tuple[str, str], ...] = (
    ("ovn-installed", "port-ready.ovn-installed"),
    ("claim", "port-ready.claim"),
    ("flows", "port-ready.flows"),
    ("verdict", "port-ready.on-chassis"),
    ("publish", "port-ready.publish"),
)
"""(column, timeline event) of the hops before the orchestrator's ``<strategy>.seen``."""


def hop_times(run: RunResult) -> dict[str, float]:
    """ms after ``ovn-installed-ts`` of each hop the run's timeline holds ({} when the run
    has no detection latency). The first event of a name counts."""
    if not run.ok or run.detection_latency_ms is None:
        return {}
    first: dict[str, float] = {}
    for e in run.timeline:
        first.setdefault(e.event, e.t_ms)
    seen = first.get(f"{run.strategy}.seen")
    if seen is None:
        return {}
    stamp = seen - run.detection_latency_ms
    out = {name: first[event] - stamp for name, event in HOPS if event in first}
    out["seen"] = run.detection_latency_ms
    return out


def hop_rows(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per (strategy, condition) group with a detection latency."""
    key = key_for(result.runs)
    headers = ["strategy", "condition", "n", *(name for name, _ in HOPS), "seen (detection)"]
    rows: list[list[str]] = []
    for _, runs in group_runs(result.runs, key).items():
        times = [t for t in map(hop_times, runs) if t]
        if not times:
            continue
        condition = ", ".join(f"{f}={v}" for f, v in run_condition(runs[0], key))
        cells = [_num(median_or_none(t.get(name) for t in times))
                 for name in (*(n for n, _ in HOPS), "seen")]  # fmt: skip
        rows.append([runs[0].strategy, condition, str(len(times)), *cells])
    return headers, rows


def detection_section(result: BenchResult) -> list[str]:
    """``## Detection latency, hop by hop`` for report.md ([] when no run has one)."""
    headers, rows = hop_rows(result)
    if not rows:
        return []
    return [
        "## Detection latency, hop by hop",
        "",
        "Medians in ms after the `ovn-installed-ts` the destination's ovn-controller "
        "stamped (negative: before it). `ovn-installed`, `claim`: the destination's check "
        "sees them; `flows`: the port's flows complete on br-int (flow monitor); `verdict`, "
        "`publish`: the agent decides and hands its verdict on (long poll, then SB write); "
        "`seen (detection)`: the orchestrator sees the verdict, by the first channel to "
        "bring it - the detection latency (docs/metrics.md).",
        "",
        *_table(headers, rows),
        "",
    ]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    right = ["---"] * 2 + ["---:"] * (len(headers) - 2)
    return [f"| {' | '.join(headers)} |", f"| {' | '.join(right)} |",
            *(f"| {' | '.join(r)} |" for r in rows)]  # fmt: skip


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
