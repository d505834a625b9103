"""The bench result format, the statistics over it, and the environment record.

Pure logic: no root, no OVN. The statistics tests use fabricated runs whose
medians are known by construction, with failed runs carrying values that would
change the answer if they were (wrongly) counted.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cutover.bench.environment import ABSENT, describe_environment
from cutover.bench.results import RESULT_FORMAT_VERSION, BenchResult, RunResult, TimelineEvent
from cutover.bench.stats import (
    DEFAULT_KEY,
    find_group,
    group_runs,
    key_for,
    median_or_none,
    median_ratio,
    run_key,
    strategy_ratios,
    summarize,
)
from cutover.errors import InputError


def make_run(strategy: str = "legacy", blackout_ms: float = 100.0, **kw: Any) -> RunResult:
    fields: dict[str, Any] = {
        "strategy": strategy,
        "guest": "emulated",
        "stall": "none",
        "activation": "rarp",
        "load": "L0",
        "vm": "vm1",
        "src": "ch1",
        "dst": "ch2",
        "run_index": 0,
        "probe_interval_ms": 10.0,
        "probes_sent": 300,
        "probes_lost": int(blackout_ms // 10),
        "blackout_ms": blackout_ms,
        "loss_outage_ms": 10.0 * int(blackout_ms // 10),
        "migration_ms": 900.0,
        "ready_wait_ms": 0.0,
    }
    fields.update(kw)
    return RunResult(**fields)


def make_bench(runs: Sequence[RunResult]) -> BenchResult:
    return BenchResult(
        started_at="2025-11-25T19:00:00+00:00",
        environment={"ovn": "23.03.1", "kernel": "6.1.0"},
        params={"runs": 3, "strategies": ["legacy", "claim"], "probe_interval_ms": 10},
        runs=list(runs),
    )


# --- format --------------------------------------------------------------------------------


def test_json_round_trip_preserves_everything(tmp_path: Path) -> None:
    rich_run = make_run(
        "claim",
        42.5,
        run_index=3,
        detection_latency_ms=3.25,
        sb_writes=7,
        timeline=[TimelineEvent(0.0, "plug.start"), TimelineEvent(512.5, "switchover", "ch2")],
        extra={"silences": [[500.0, 542.5]], "note": {"nested": True}},
    )
    failed = make_run("legacy", 0.0, error="WaitTimeout: timed out")
    bench = make_bench([rich_run, failed])
    path = tmp_path / "bench.json"
    bench.save(path)

    assert json.loads(path.read_text())["version"] == RESULT_FORMAT_VERSION == 2
    loaded = BenchResult.load(path)
    assert loaded == bench
    assert loaded.runs[0].timeline[1] == TimelineEvent(512.5, "switchover", "ch2")
    assert loaded.runs[0].detection_latency_ms == 3.25
    assert loaded.runs[1].detection_latency_ms is None
    assert not loaded.runs[1].ok and loaded.runs[0].ok
    assert not list(tmp_path.glob("*.tmp")), "atomic save must not leave its temp file"


def test_whole_numbers_written_as_ints_load_as_floats() -> None:
    d = make_run(blackout_ms=100.0).to_dict()
    d["blackout_ms"] = 100  # what a non-Python writer would produce
    run = RunResult.from_dict(d)
    assert run.blackout_ms == 100.0 and isinstance(run.blackout_ms, float)


def test_other_version_is_refused_naming_the_file(tmp_path: Path) -> None:
    d = make_bench([make_run()]).to_dict()
    d["version"] = 1
    path = tmp_path / "old-bench.json"
    path.write_text(json.dumps(d))
    with pytest.raises(InputError, match=r"old-bench\.json.*version 1.*re-run the bench"):
        BenchResult.load(path)


def test_missing_version_is_refused() -> None:
    d = make_bench([]).to_dict()
    del d["version"]
    with pytest.raises(InputError, match="version None"):
        BenchResult.from_dict(d)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("blackout_ms"), "missing key 'blackout_ms'"),
        (lambda r: r.update(probes_lost="7"), "'probes_lost' is '7'"),
        (lambda r: r.update(probes_lost=True), "'probes_lost' is True"),
        (lambda r: r.update(surprise=1), "unknown keys"),
        (lambda r: r.update(timeline=[{"t_ms": 1.0}]), "missing key 'event'"),
    ],
)
def test_malformed_run_is_an_input_error_naming_the_file(
    tmp_path: Path, mutate: Any, message: str
) -> None:
    d = make_bench([make_run()]).to_dict()
    mutate(d["runs"][0])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(InputError, match=r"bad\.json") as caught:
        BenchResult.load(path)
    assert message in str(caught.value)


def test_missing_and_non_json_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no bench result"):
        BenchResult.load(tmp_path / "nope.json")
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        BenchResult.load(tmp_path / "garbage.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(InputError, match="not a JSON object"):
        BenchResult.load(tmp_path / "list.json")


# --- statistics ----------------------------------------------------------------------------


def fabricated_runs() -> list[RunResult]:
    """legacy: 300/100/200 ms (+ a failed 9999), claim: 10/30/20/40 ms, and a stalled
    condition where legacy failed every time."""
    return [
        make_run("legacy", 300.0, run_index=0, ready_wait_ms=0.0, sb_writes=4),
        make_run("claim", 10.0, run_index=0, ready_wait_ms=50.0, detection_latency_ms=2.0),
        make_run("legacy", 100.0, run_index=1, ready_wait_ms=0.0, sb_writes=6),
        make_run("claim", 30.0, run_index=1, ready_wait_ms=70.0, detection_latency_ms=6.0),
        make_run("legacy", 9999.0, run_index=2, migration_ms=1.0, error="boom"),
        make_run("claim", 20.0, run_index=2, ready_wait_ms=60.0, detection_latency_ms=4.0),
        make_run("legacy", 200.0, run_index=3, ready_wait_ms=0.0, sb_writes=5),
        make_run("claim", 40.0, run_index=3, ready_wait_ms=80.0, detection_latency_ms=8.0),
        make_run("legacy", 2500.0, stall="dst:2000", error="timeout"),
        make_run("claim", 60.0, stall="dst:2000", ready_wait_ms=2000.0),
    ]


def test_grouping_keeps_bench_order_and_separates_conditions() -> None:
    groups = group_runs(fabricated_runs())
    assert list(groups) == [
        ("legacy", "none", "rarp", "L0"),
        ("claim", "none", "rarp", "L0"),
        ("legacy", "dst:2000", "rarp", "L0"),
        ("claim", "dst:2000", "rarp", "L0"),
    ]
    assert [len(g) for g in groups.values()] == [4, 4, 1, 1]  # failed runs stay in groups


def test_medians_exclude_failed_runs() -> None:
    stats = summarize(fabricated_runs())
    legacy = find_group(stats, strategy="legacy", stall="none")
    assert (legacy.n, legacy.failed) == (3, 1)
    assert legacy.blackout_median_ms == 200.0  # 9999 of the failed run would make it 250
    assert (legacy.blackout_min_ms, legacy.blackout_max_ms) == (100.0, 300.0)
    assert legacy.probes_lost_median == 20.0
    assert legacy.migration_median_ms == 900.0  # the failed run's 1.0 is not counted
    assert legacy.sb_writes_median == 5.0
    assert legacy.detection_latency_median_ms is None  # legacy never recorded one

    claim = find_group(stats, strategy="claim", stall="none")
    assert (claim.n, claim.failed) == (4, 0)
    assert claim.blackout_median_ms == 25.0  # even count: mean of 20 and 30
    assert claim.ready_wait_median_ms == 65.0
    assert claim.detection_latency_median_ms == 5.0
    assert claim.sb_writes_median is None


def test_group_where_every_run_failed_has_no_statistics() -> None:
    stalled = find_group(summarize(fabricated_runs()), strategy="legacy", stall="dst:2000")
    assert (stalled.n, stalled.failed) == (0, 1)
    assert stalled.blackout_median_ms is None and stalled.blackout_max_ms is None


def test_ratios_within_one_condition_slower_first() -> None:
    stats = summarize(fabricated_runs())
    legacy = find_group(stats, strategy="legacy", stall="none")
    claim = find_group(stats, strategy="claim", stall="none")
    assert median_ratio(legacy, claim) == 8.0
    assert median_ratio(claim, legacy) == 0.125

    ratios = strategy_ratios(stats)
    # The stalled condition has only one strategy with successful runs: no pair there.
    assert len(ratios) == 1
    (r,) = ratios
    assert (r.slower, r.faster, r.value) == ("legacy", "claim", 8.0)
    assert dict(r.condition) == {"stall": "none", "activation": "rarp", "load": "L0"}


def test_ratio_against_a_zero_median_has_no_value() -> None:
    stats = summarize([make_run("legacy", 50.0), make_run("port-ready", 0.0)])
    (r,) = strategy_ratios(stats)
    assert r.faster == "port-ready" and r.value is None
    assert median_ratio(stats[0], stats[1]) is None


def test_key_includes_guest_only_when_guests_are_mixed() -> None:
    assert key_for([make_run(), make_run(guest="emulated")]) == DEFAULT_KEY
    mixed = [make_run(guest="emulated"), make_run(guest="qemu")]
    assert key_for(mixed) == ("strategy", "guest", "stall", "activation", "load")
    assert len(summarize(mixed, key_for(mixed))) == 2


def test_grouping_by_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="colour"):
        run_key(make_run(), ("strategy", "colour"))


def test_median_or_none_ignores_missing_values() -> None:
    assert median_or_none([None, 3, 1, None, 2]) == 2.0
    assert median_or_none([None]) is None


# --- environment ---------------------------------------------------------------------------


def fake_runner(outputs: dict[str, str | BaseException]) -> Any:
    def run(argv: Sequence[str]) -> str:
        out = outputs.get(argv[0], FileNotFoundError(argv[0]))
        if isinstance(out, BaseException):
            raise out
        return out

    return run


def test_environment_reports_versions_and_absent_tools(tmp_path: Path) -> None:
    (tmp_path / "debian_version").write_text("12.11\n")
    (tmp_path / "os-release").write_text('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    run = fake_runner(
        {
            "ovn-controller": "ovn-controller 23.03.1\nOpen vSwitch Library 3.1.0\n",
            "ovs-vswitchd": subprocess.TimeoutExpired(["ovs-vswitchd"], 5.0),
        }
    )
    env = describe_environment(run=run, etc=tmp_path)
    assert env["ovn"] == "23.03.1"
    assert env["ovs"] == "unknown (ovs-vswitchd timed out)"
    assert env["qemu"] == ABSENT
    assert env["debian"] == "12.11"
    assert env["os"] == "Debian GNU/Linux 12"
    assert int(env["cpus"]) >= 1
    assert set(env) >= {"kernel", "python"}


def test_environment_says_how_the_verdicts_came(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: the detection-latency benches of both channels and of the SB alone
    (docs/measurements/2026-11-30-detection-{api,sb}) differed only in their directory
    name; CUTOVER_VERDICT_CHANNEL moves the figure by the SB hop."""
    monkeypatch.delenv("CUTOVER_VERDICT_CHANNEL", raising=False)
    assert describe_environment(run=fake_runner({}), etc=tmp_path)["verdict_channel"].startswith(
        "first (the agent's API or the SB")
    monkeypatch.setenv("CUTOVER_VERDICT_CHANNEL", "sb")
    assert describe_environment(run=fake_runner({}), etc=tmp_path)["verdict_channel"] == (
        "sb (the SB record only)")


def test_environment_without_etc_files_says_absent(tmp_path: Path) -> None:
    env = describe_environment(run=fake_runner({}), etc=tmp_path)
    assert env["debian"] == env["os"] == env["ovn"] == ABSENT
