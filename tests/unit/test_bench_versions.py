"""A bench over several OVN versions: merge, grouping by version, side-by-side table."""

from __future__ import annotations

from typing import Any

from cutover.bench import versions
from cutover.bench.environment import site_environment
from cutover.bench.report import render_markdown, summary_rows
from cutover.bench.results import BenchResult, RunResult
from cutover.bench.stats import key_for

EVIDENCE = ("{path} on hv2: flows for ofport 4/key 2: blocked-awaiting-activation "
            "(ingress=True egress=True table={table} in-drop=True out-drop=True)")


def run(ovn: str, strategy: str, blackout: float, path: str = "", table: int = 65,
        error: str | None = None, **kw: Any) -> RunResult:
    evidence = EVIDENCE.format(path=path, table=table) if path else ""
    return RunResult(strategy=strategy, guest="emulated", stall="none", activation="rarp",
                     load="L0", vm="vm1", src="hv1", dst="hv2", run_index=0,
                     probe_interval_ms=2.0, probes_sent=100, probes_lost=3,
                     blackout_ms=blackout, loss_outage_ms=blackout, migration_ms=300.0,
                     ready_wait_ms=kw.get("ready", 10.0),
                     detection_latency_ms=kw.get("detect"), sb_writes=kw.get("sb", 6),
                     error=error, extra={"evidence": evidence}, ovn=ovn)


def bench(runs: list[RunResult], env: dict[str, str]) -> BenchResult:
    return BenchResult(started_at="2026-11-30T06:00:00+00:00", environment=env,
                       params={"runs": 3}, runs=runs)


def test_readiness_path_names_the_path_and_table() -> None:
    assert versions.readiness_path(run("1", "port-ready", 1, "ovn-installed+flows")) == \
        "ovn-installed+flows (t65)"
    assert versions.readiness_path(run("1", "port-ready", 1, "flows-only", table=81)) == \
        "flows-only (t81)"
    assert versions.readiness_path(run("1", "claim", 1)) == ""


def test_merge_joins_differing_environment_and_keeps_all_runs() -> None:
    a = bench([run("23.03.1", "claim", 30.0)],
              {"ovn": "23.03.1", "kernel": "6.1", "ovn_install": "host (host packages)"})
    b = bench([run("25.03.0", "claim", 40.0)],
              {"ovn": "25.03.0", "kernel": "6.1", "ovn_install": "25.03 (Debian root /r)"})
    merged = versions.merge([a, b])
    assert merged.environment["ovn"] == "23.03.1 | 25.03.0"
    assert merged.environment["kernel"] == "6.1"
    assert merged.params["ovn"] == ["host (host packages)", "25.03 (Debian root /r)"]
    assert [r.ovn for r in merged.runs] == ["23.03.1", "25.03.0"]
    assert BenchResult.from_dict(merged.to_dict()) == merged


def test_versions_are_separate_groups_and_compared_side_by_side() -> None:
    runs = [
        run("23.03.1", "port-ready", 30.0, "ovn-installed+flows", detect=12.0, sb=5),
        run("23.03.1", "port-ready", 50.0, "ovn-installed+flows", detect=14.0, sb=5),
        run("25.03.0", "port-ready", 40.0, "flows-only", table=81, detect=300.0, sb=6),
        run("25.03.0", "port-ready", 9999.0, "flows-only", error="MigrationAborted: x"),
    ]
    result = bench(runs, {"ovn": "23.03.1 | 25.03.0"})
    assert "ovn" in key_for(result.runs)
    assert len(summary_rows(result)) == 2
    headers, rows = versions.comparison_rows(result)
    assert headers[2] == "median blackout ms (23.03.1 / 25.03.0)"
    assert rows == [["L0, stall=none, act=rarp", "port-ready", "40.0 / 40.0", "10.0 / 10.0",
                     "13.0 / 300.0", "5.0 / 6.0", "ovn-installed+flows (t65) / flows-only (t81)",
                     "0 / 1"]]
    md = render_markdown(result, _paths())
    assert "## OVN versions side by side" in md
    assert "flows-only (t81)" in md


def test_single_version_bench_has_no_version_section() -> None:
    result = bench([run("23.03.1", "claim", 30.0), run("23.03.1", "legacy", 60.0)], {})
    assert "ovn" not in key_for(result.runs)
    assert versions.markdown_section(result) == []


def test_old_results_without_ovn_still_read() -> None:
    d = run("", "claim", 1.0).to_dict()
    del d["ovn"]
    assert RunResult.from_dict(d).ovn == ""


def test_site_environment_reports_the_lab_binaries() -> None:
    extra = {"ovn": {"install": "25.03", "from": "Debian root /r", "ovn": "25.03.0",
                     "ovs": "3.5.0", "ovn-northd": "25.03.0", "ovs-vswitchd": "3.5.0"}}
    env = site_environment(extra)
    assert env == {"ovn": "25.03.0", "ovs": "3.5.0", "ovn_install": "25.03 (Debian root /r)",
                   "ovn_binaries": "ovn-northd 25.03.0, ovs-vswitchd 3.5.0"}
    assert site_environment({}) == {}


def _paths() -> Any:
    from pathlib import Path

    from cutover.bench.report import ReportPaths

    d = Path("/nonexistent")
    return ReportPaths(d / "bench.json", d / "blackout.png", d / "timeline.png", d / "r.md")
