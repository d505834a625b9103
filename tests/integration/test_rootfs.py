"""The Debian root cache: one build for concurrent callers, a half-built root rebuilt.

The build itself is real once (``ensure_root("25.03")`` into the machine's cache, as ``make
test`` needs it anyway); the cache logic is then exercised in a private cache dir with a
stand-in ``mmdebstrap`` first on PATH that hard-links that real root into its target and
counts its calls, so the check after the build runs the real OVN binaries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.lab import rootfs
from cutover.lab.ovn_install import OvnInstall

pytestmark = [pytest.mark.integration]

FAKE = """#!/bin/sh
echo call >> "{calls}"
target=$(eval echo \\${{$(($# - 1))}})
echo "I: running apt-get update..."
sleep 1
cp -al "{source}" "$target" 2>/dev/null || cp -a "{source}" "$target"
rm -f "$target/{stamp}"
echo "I: success in 1 seconds"
"""


@pytest.fixture(scope="module")
def real_root() -> OvnInstall:
    return rootfs.ensure_root("25.03")


@pytest.fixture
def fake_env(tmp_path: Path, real_root: OvnInstall) -> dict[str, str]:
    assert real_root.root is not None
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    script = bindir / "mmdebstrap"
    script.write_text(FAKE.format(calls=calls, source=real_root.root, stamp=rootfs.STAMP))
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
            "CUTOVER_ROOT_CACHE": str(tmp_path / "cache")}


def _ensure(env: dict[str, str]) -> subprocess.Popen[str]:
    code = ("from cutover.lab import rootfs; i = rootfs.ensure_root('25.03'); "
            "print(i.root, rootfs.is_complete(i))")
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _calls(env: dict[str, str]) -> int:
    path = Path(env["CUTOVER_ROOT_CACHE"]).parent / "calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_real_root_is_stamped_with_its_versions(real_root: OvnInstall) -> None:
    assert real_root.root is not None
    stamp = json.loads((real_root.root / rootfs.STAMP).read_text())
    assert stamp["suite"] == "trixie"
    assert stamp["versions"]["ovn"] == real_root.versions()["ovn"]
    assert stamp["versions"]["ovn"].startswith("25.03.")
    # the alternatives symlink of ovs-vswitchd resolves inside the root, not to the host
    assert str(real_root.binary("ovs-vswitchd")).startswith(str(real_root.root) + "/")


def test_concurrent_builders_build_once(fake_env: dict[str, str]) -> None:
    procs = [_ensure(fake_env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.split()[1] == "True"
    assert _calls(fake_env) == 1
    cache = Path(fake_env["CUTOVER_ROOT_CACHE"])
    assert sorted(p.name for p in cache.iterdir()) == ["trixie", "trixie.lock"]


def test_incomplete_root_is_rebuilt(fake_env: dict[str, str]) -> None:
    p = _ensure(fake_env)
    assert p.communicate(timeout=120)[0].split()[1] == "True"
    root = Path(fake_env["CUTOVER_ROOT_CACHE"]) / "trixie"
    (root / rootfs.STAMP).unlink()  # as if a build had crashed before it finished
    p = _ensure(fake_env)
    assert p.communicate(timeout=120)[0].split()[1] == "True"
    assert _calls(fake_env) == 2
    assert (root / rootfs.STAMP).is_file()


def test_failed_build_leaves_nothing_at_the_final_path(fake_env: dict[str, str]) -> None:
    bindir = Path(fake_env["PATH"].split(":")[0])
    (bindir / "mmdebstrap").write_text("#!/bin/sh\necho 'E: mirror unreachable'\nexit 1\n")
    p = _ensure(fake_env)
    _, err = p.communicate(timeout=120)
    assert p.returncode != 0
    assert "mmdebstrap exit 1" in err and "E: mirror unreachable" in err
    cache = Path(fake_env["CUTOVER_ROOT_CACHE"])
    assert sorted(p.name for p in cache.iterdir()) == ["trixie.lock"]
