"""``cutover bench --ovn host --ovn 25.03``: one lab per version, built and removed in turn,
one bench.json comparing them (real daemons of both versions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from labkit import lab_prefix

from cutover.bench.results import BenchResult
from cutover.lab import Lab, LabTopology, host

pytestmark = [pytest.mark.integration]

PREFIX = lab_prefix("cobv")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cutover.cli", "--prefix", PREFIX, *args],
                          capture_output=True, text=True, timeout=600)


def test_bench_compares_versions_in_one_invocation(tmp_path: Path) -> None:
    lab = Lab(LabTopology(prefix=PREFIX))
    lab.down()
    out = tmp_path / "bench"
    try:
        r = _cli("bench", "--ovn", "host", "--ovn", "25.03", "--strategy", "port-ready",
                 "--runs", "1", "--copy-ms", "100", "--keep-lab", "--out", str(out))
        assert r.returncode == 0, r.stderr + r.stdout
        result = BenchResult.load(out / "bench.json")
        versions = [run.ovn for run in result.runs]
        assert len(versions) == 2 and versions[0] != versions[1]
        assert versions[1].startswith("25.03.")
        assert result.environment["ovn"] == " | ".join(versions)
        for run in result.runs:
            assert run.error is None
            assert "ovn-installed+flows" in run.extra["evidence"] \
                or "flows-only" in run.extra["evidence"]
        report = (out / "report.md").read_text()
        assert "## OVN versions side by side" in report
        assert "OVN versions side by side" in r.stdout
        # --keep-lab keeps the last version's lab; asking another version of it is refused
        assert "OVN 25.03." in lab.status().describe()
        r = _cli("bench", "--ovn", "host", "--runs", "1", "--out", str(tmp_path / "x"))
        assert r.returncode == 2  # a bad request: nothing measured
        assert "runs --ovn 25.03, not host" in r.stderr
        assert not (tmp_path / "x" / "bench.json").exists()
    finally:
        assert lab.down() == []
    assert host.list_netns(PREFIX) == []
