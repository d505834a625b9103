"""The detection latency's hop-by-hop table (:mod:`cutover.bench.detection`), on
synthetic timelines: hops are placed relative to ``ovn-installed-ts``, missing marks and
runs without a detection latency are left out, failed runs never count."""

from __future__ import annotations

from typing import Any

from cutover.bench.detection import detection_section, hop_rows, hop_times
from cutover.bench.results import BenchResult, RunResult, TimelineEvent


def make_run(strategy: str, blackout_ms: float, **kw: Any) -> RunResult:
    fields: dict[str, Any] = {
        "strategy": strategy, "guest": "emulated", "stall": "none", "activation": "rarp",
        "load": "L0", "vm": "vm1", "src": "ch1", "dst": "ch2", "run_index": 0,
        "probe_interval_ms": 2.0, "probes_sent": 500, "probes_lost": 20,
        "blackout_ms": blackout_ms, "loss_outage_ms": 40.0, "migration_ms": 500.0,
        "ready_wait_ms": 25.0,
    }  # fmt: skip
    fields.update(kw)
    return RunResult(**fields)


def make_bench(runs: list[RunResult]) -> BenchResult:
    return BenchResult(started_at="2026-11-30T08:00:00+00:00", environment={},
                       params={}, runs=runs)  # fmt: skip


def _port_ready(seen: float, latency: float | None, marks: dict[str, float],
                **kw: Any) -> RunResult:
    """A port-ready run whose orchestrator saw the verdict at ``seen`` ms."""
    timeline = [TimelineEvent(t, f"port-ready.{name}") for name, t in marks.items()]
    timeline += [TimelineEvent(seen, "port-ready.seen"),
                 TimelineEvent(seen + 1.0, "port-ready.seen")]  # a later duplicate
    return make_run("port-ready", 40.0, detection_latency_ms=latency,
                    timeline=sorted(timeline, key=lambda e: e.t_ms), **kw)  # fmt: skip


def test_hops_are_placed_after_the_stamp() -> None:
    # ovn-installed-ts at t=100: the orchestrator saw it at 112
    run = _port_ready(112.0, 12.0, {"claim": 98.0, "ovn-installed": 103.0, "flows": 101.5,
                                    "on-chassis": 104.0, "publish": 105.0})  # fmt: skip
    assert hop_times(run) == {"ovn-installed": 3.0, "claim": -2.0, "flows": 1.5,
                              "verdict": 4.0, "publish": 5.0, "seen": 12.0}  # fmt: skip


def test_runs_without_a_latency_or_failed_count_nowhere() -> None:
    assert hop_times(_port_ready(112.0, None, {"claim": 98.0})) == {}
    assert hop_times(_port_ready(112.0, 12.0, {"claim": 98.0}, error="boom")) == {}
    assert hop_times(make_run("claim", 30.0)) == {}


def test_table_has_medians_per_group_and_dashes_for_missing_hops() -> None:
    runs = [
        _port_ready(110.0, 10.0, {"ovn-installed": 102.0}),
        _port_ready(120.0, 20.0, {"ovn-installed": 104.0}),
        _port_ready(130.0, 30.0, {"ovn-installed": 109.0}),
        _port_ready(130.0, None, {}),  # no ovn-installed-ts: not in n
        make_run("claim", 30.0),
    ]
    headers, rows = hop_rows(make_bench(runs))
    assert headers[-1] == "seen (detection)"
    assert len(rows) == 1
    row = dict(zip(headers, rows[0], strict=True))
    assert row["strategy"] == "port-ready" and row["n"] == "3"
    assert row["ovn-installed"] == "4.0" and row["seen (detection)"] == "20.0"
    assert row["claim"] == "-" and row["publish"] == "-"
    section = detection_section(make_bench(runs))
    assert section[0] == "## Detection latency, hop by hop"
    assert detection_section(make_bench([make_run("claim", 30.0)])) == []
