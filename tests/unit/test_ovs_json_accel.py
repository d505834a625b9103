"""scripts/ovs-json-accel (run by ``make venv``): without a matching C extension in the
distribution it says so, exits 0 and leaves no stale link of an earlier run behind."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ovs-json-accel"


def _script() -> Any:
    loader = importlib.machinery.SourceFileLoader("ovs_json_accel", str(SCRIPT))
    spec = importlib.util.spec_from_loader("ovs_json_accel", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_no_matching_extension_says_so_and_removes_a_stale_link(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg, distro = tmp_path / "ovs", tmp_path / "distro"
    pkg.mkdir()
    distro.mkdir()  # python3-openvswitch gone, or built for another Python
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    stale = pkg / f"_json{suffix}"
    stale.symlink_to(distro / f"_json{suffix}")  # linked by an earlier run
    assert _script().main(pkg, distro) == 0
    assert "no C JSON parser for this Python" in capsys.readouterr().out
    assert not stale.is_symlink(), "a dangling link of an earlier run was left"


def test_an_own_extension_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg = tmp_path / "ovs"
    pkg.mkdir()
    own = pkg / f"_json{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    own.write_bytes(b"built by pip")
    assert _script().main(pkg, tmp_path / "distro") == 0
    assert "has its own C JSON parser" in capsys.readouterr().out and own.is_file()
