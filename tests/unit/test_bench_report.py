"""The rendered bench report: files, PNG validity, and numbers in report.md.

Pure logic: no root, no OVN. The report numbers are checked against medians that
are known by construction, so a report quoting the wrong statistic fails here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
from rich.console import Console

from cutover.bench.report import SUMMARY_HEADERS, ReportPaths, summary_table, write_report
from cutover.bench.results import BenchResult, RunResult, TimelineEvent

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(strategy: str, blackout_ms: float, **kw: Any) -> RunResult:
    switchover = 500.0
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
        "probes_sent": 200,
        "probes_lost": int(blackout_ms // 10),
        "blackout_ms": blackout_ms,
        "loss_outage_ms": 10.0 * int(blackout_ms // 10),
        "migration_ms": 800.0,
        "ready_wait_ms": 25.0,
        "timeline": [
            TimelineEvent(0.0, "plug.start"),
            TimelineEvent(12.0, "plug.done"),
            TimelineEvent(switchover, "switchover"),
            TimelineEvent(switchover + blackout_ms, "activated"),
        ],
        "extra": {"silences": [[switchover, switchover + blackout_ms]]},
    }
    fields.update(kw)
    return RunResult(**fields)


def make_bench(runs: Sequence[RunResult]) -> BenchResult:
    return BenchResult(
        started_at="2025-11-25T19:00:00+00:00",
        environment={"ovn": "23.03.1", "ovs": "3.1.0", "qemu": "absent"},
        params={"runs": 3, "probe_interval_ms": 10, "strategies": ["legacy", "claim"]},
        runs=list(runs),
    )


def alternating_bench() -> BenchResult:
    """Two strategies alternating under two stall conditions, plus one failed run.

    Medians by construction: none/legacy 250.0, none/claim 12.0,
    dst:2000/legacy 2300.0, dst:2000/claim 40.0 (the failed claim run's 5000 ms excluded).
    """
    runs = []
    values = {
        ("none", "legacy"): [200.0, 300.0, 250.0],
        ("none", "claim"): [12.0, 8.0, 15.0],
        ("dst:2000", "legacy"): [2300.0, 2100.0, 2400.0],
        ("dst:2000", "claim"): [40.0, 30.0, 50.0],
    }
    for stall in ("none", "dst:2000"):
        for i in range(3):
            for strategy in ("legacy", "claim"):
                blackout = values[(stall, strategy)][i]
                runs.append(make_run(strategy, blackout, stall=stall, run_index=i))
    runs.append(make_run("claim", 5000.0, stall="dst:2000", run_index=3, error="GuestError: died"))
    return make_bench(runs)


def assert_readable_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), f"{path.name} is not a PNG"
    assert len(data) > 1000
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert 200 <= height <= 20000 and 400 <= width <= 20000
    assert image.std() > 0.01, f"{path.name} is blank"


def summary_cells(md: str) -> list[list[str]]:
    """The cells of every Markdown table row as wide as the summary table."""
    tables = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()]
    return [cells for cells in tables if len(cells) == len(SUMMARY_HEADERS)]


@pytest.fixture
def report(tmp_path: Path) -> tuple[BenchResult, ReportPaths]:
    bench = alternating_bench()
    return bench, write_report(bench, tmp_path / "out")


def test_write_report_produces_the_four_files(report: tuple[BenchResult, ReportPaths]) -> None:
    bench, paths = report
    assert paths.json.name == "bench.json" and paths.markdown.name == "report.md"
    for path in (paths.json, paths.blackout_png, paths.timeline_png, paths.markdown):
        assert path.is_file() and path.stat().st_size > 0, path
    assert BenchResult.load(paths.json) == bench


def test_pngs_are_valid_images(report: tuple[BenchResult, ReportPaths]) -> None:
    _, paths = report
    assert_readable_png(paths.blackout_png)
    assert_readable_png(paths.timeline_png)


def test_timeline_grows_with_the_number_of_runs(tmp_path: Path) -> None:
    few = write_report(make_bench([make_run("legacy", 100.0)]), tmp_path / "few")
    many = write_report(alternating_bench(), tmp_path / "many")
    few_h = matplotlib.image.imread(few.timeline_png).shape[0]
    many_h = matplotlib.image.imread(many.timeline_png).shape[0]
    assert many_h > few_h * 2  # one lane per run, not squeezed into a fixed height


def test_report_md_quotes_the_computed_medians(report: tuple[BenchResult, ReportPaths]) -> None:
    _, paths = report
    md = paths.markdown.read_text()
    rows = {(cells[0], cells[1]): cells for cells in summary_cells(md)}
    stall = "stall=dst:2000, activation=rarp, load=L0"
    none = "stall=none, activation=rarp, load=L0"
    col = SUMMARY_HEADERS.index
    assert rows[("legacy", none)][2:6] == ["3", "250.0", "200.0", "300.0"]
    assert rows[("claim", none)][2:6] == ["3", "12.0", "8.0", "15.0"]
    assert rows[("legacy", stall)][3] == "2300.0"
    assert rows[("claim", stall)][2:6] == ["3", "40.0", "30.0", "50.0"]
    assert rows[("claim", stall)][col("failed")] == "1"
    assert rows[("claim", stall)][col("lost")] == "4"  # of 40/30/50 ms at 10 ms
    assert rows[("claim", stall)][col("loss outage ms")] == "40.0"


def test_report_md_has_ratios_images_environment_and_method(
    report: tuple[BenchResult, ReportPaths],
) -> None:
    _, paths = report
    md = paths.markdown.read_text()
    assert "| legacy / claim | 20.8x | 250.0 / 12.0 |" in md  # 250 / 12
    assert "| legacy / claim | 57.5x | 2300.0 / 40.0 |" in md  # 2300 / 40
    assert "![Blackout per strategy and condition](blackout.png)" in md
    assert "](timeline.png)" in md
    assert "| ovn | 23.03.1 |" in md
    assert '| strategies | ["legacy", "claim"] |' in md
    assert "GuestError: died" in md  # failed runs are listed with their error
    assert "## How measured" in md and "third chassis" in md
    how = md[md.index("## How measured"):]
    for term in ("longest interval, by arrival time", "loss outage", "max RTT", "duplicates",
                 "failed, not measured"):
        assert term in how


def test_summary_table_has_one_row_per_group() -> None:
    table = summary_table(alternating_bench())
    assert [c.header for c in table.columns] == list(SUMMARY_HEADERS)
    assert table.row_count == 4
    console = Console(file=io.StringIO(), width=220, record=True)
    console.print(table)
    text = console.export_text()
    assert "2300.0" in text and "12.0" in text


def test_malformed_loss_windows_and_unusual_events_still_render(tmp_path: Path) -> None:
    odd = make_run(
        "port-ready",
        0.0,
        timeline=[TimelineEvent(-5.0, "stall.start"), TimelineEvent(3.0, "made.up.event")],
        extra={"silences": [[1, "x"], "junk", [2.0]]},
    )
    paths = write_report(make_bench([odd, make_run("legacy", 3000.0)]), tmp_path)
    assert_readable_png(paths.timeline_png)
    assert_readable_png(paths.blackout_png)
    assert "n/a (port-ready: 0 ms)" in paths.markdown.read_text()


def test_empty_and_all_failed_benches_still_produce_a_report(tmp_path: Path) -> None:
    empty = write_report(make_bench([]), tmp_path / "empty")
    assert empty.blackout_png.read_bytes().startswith(PNG_MAGIC)
    assert "nothing to compare" in empty.markdown.read_text()

    failed = make_run("legacy", 0.0, error="MigrationAborted: rolled back")
    paths = write_report(make_bench([failed]), tmp_path / "failed")
    assert_readable_png(paths.blackout_png)
    assert "| legacy | stall=none, activation=rarp, load=L0 | 0 | - |" in (
        paths.markdown.read_text()
    )


def test_blackout_title_stays_inside_the_figure() -> None:
    """A long condition line once ran off the figure's left edge (a centred axes title)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from cutover.bench import report

    runs = [make_run(s, b, stall="dst:2000", activation="none", load="L2")
            for s, b in [("legacy", 2000.0), ("claim", 36.0)] * 3]  # fmt: skip
    fig = report._blackout_figure(make_bench(runs))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # type: ignore[no-untyped-call]
    title = fig.get_suptitle()
    assert "stall=dst:2000" in title and "activation=none" in title
    renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]
    box = fig._suptitle.get_window_extent(renderer)  # type: ignore[attr-defined]
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1


def test_the_gate_section_reports_open_latency_drops_and_what_opened_it() -> None:
    """Open-after-STOP from the timeline (guest.stop -> tap-gate.opened), dropped frames
    from the opened mark; runs without a gate (and failed ones) are not in it."""
    from cutover.bench.gate_report import gate_rows, gate_section

    def gated(stop: float, opened: float, dropped: int, by: str = "source STOP",
              error: str | None = None) -> RunResult:
        detail = f"{by}; {opened - stop:.1f} ms after the source's STOP; the gate dropped " \
                 f"{dropped} frames"
        return make_run("port-ready", 40.0, activation="pre-gated", error=error, timeline=[
            TimelineEvent(100.0, "tap-gate.closed"), TimelineEvent(stop, "guest.stop"),
            TimelineEvent(opened, "tap-gate.opened", detail)])

    lost = make_run("port-ready", 50.0, activation="pre-gated", timeline=[
        TimelineEvent(100.0, "tap-gate.closed"), TimelineEvent(400.0, "guest.stop")])
    bench = make_bench([gated(400.0, 403.0, 20), gated(500.0, 501.0, 40),
                        gated(450.0, 470.0, 30, by="destination RESUME (backstop)"),
                        gated(400.0, 900.0, 99, error="Leftovers: x"), lost,
                        make_run("port-ready", 60.0, activation="pre")])
    (row,) = gate_rows(bench)
    assert row[2:] == ["4", "3.0", "1.0", "20.0", "30",
                       "destination RESUME (backstop) x1, none left (the gate was removed "
                       "before it opened) x1, source STOP x2"]
    assert "activation=pre-gated" in row[1]
    assert "## The destination TAP gate" in gate_section(bench)
    assert gate_section(make_bench([make_run("claim", 10.0)])) == []
