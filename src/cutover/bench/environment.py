"""What software a bench ran on, recorded next to its numbers.

A blackout measured on OVN 23.03 says little about OVN 24.09, and a kernel or
QEMU upgrade can move it too; without this record two ``bench.json`` files could
not be compared honestly. Collecting it must never abort a bench that has already
spent minutes migrating, so every probe degrades to a string: ``absent`` when the
tool is not installed, ``unknown (...)`` when it misbehaves. Each tool runs with a
timeout because a wedged binary (e.g. one waiting on a dead database) must not hang
the report.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cutover.chassis.agent_client import CHANNEL_ENV
from cutover.errors import CutoverError
from cutover.guest import qemu_proc

ABSENT = "absent"
TOOL_TIMEOUT_S = 5.0

Runner = Callable[[Sequence[str]], str]
"""Runs argv and returns its stdout; raises FileNotFoundError if the tool is missing."""

_VERSION_RE = re.compile(r"\d+(?:\.\d+)+\S*")


def describe_environment(
    run: Runner | None = None,
    etc: Path = Path("/etc"),
) -> dict[str, str]:
    """The versions that matter for a blackout measurement, as display strings.

    ``run`` and ``etc`` exist for tests: the defaults run the real tools and read the
    real ``/etc``.
    """
    runner = run or _run_tool
    os_release = _os_release(etc / "os-release")
    return {
        "ovn": _version_number(runner, ["ovn-controller", "--version"]),
        "ovs": _version_number(runner, ["ovs-vswitchd", "--version"]),
        "kernel": platform.release(),
        "debian": _read_first_line(etc / "debian_version"),
        "os": os_release.get("PRETTY_NAME", ABSENT),
        "python": platform.python_version(),
        "cpus": str(os.cpu_count() or "unknown"),
        "qemu": _qemu_version(runner),
        "verdict_channel": _verdict_channel(),
        "ovsdb_json": _ovsdb_json(),
    }


def _ovsdb_json() -> str:
    """Which JSON parser python-ovs uses for every OVSDB message the orchestrator and the
    agents read: the C one is ~30x faster (6.2 vs 0.19 ms for a 23 KB update, measured)
    and moves detection latencies by ms (scripts/ovs-json-accel)."""
    import ovs.json

    return "C (ovs._json)" if ovs.json.PARSER == ovs.json.PARSER_C else "Python (slow)"


def _verdict_channel() -> str:
    """How the agents' readiness verdicts reached the orchestrator: it moves the detection
    latency by the SB hop (docs/readiness.md, "Two channels"), so a bench says which."""
    value = os.environ.get(CHANNEL_ENV, "first")
    return {"first": "first (the agent's API or the SB, whichever came first)",
            "sb": "sb (the SB record only)"}.get(value, f"unknown ({CHANNEL_ENV}={value!r})")


def lab_ovn(extra: Mapping[str, Any]) -> Mapping[str, str]:
    """What the site recorded about the OVN it runs (``Site.extra["ovn"]``; {} if none)."""
    recorded = extra.get("ovn")
    return {str(k): str(v) for k, v in recorded.items()} if isinstance(recorded, dict) else {}


def site_environment(extra: Mapping[str, Any]) -> dict[str, str]:
    """The OVN/OVS the lab's daemons really run, as they reported it at ``lab up``.

    Overrides :func:`describe_environment`'s ``ovn``/``ovs``, which ask the host's binaries:
    a lab on a newer Debian root runs other ones. {} for a site that recorded nothing.
    """
    ovn = lab_ovn(extra)
    if not ovn:
        return {}
    skip = {"ovn", "ovs", "install", "from"}
    binaries = ", ".join(f"{k} {v}" for k, v in ovn.items() if k not in skip)
    return {
        "ovn": ovn.get("ovn", ABSENT),
        "ovs": ovn.get("ovs", ABSENT),
        "ovn_install": f"{ovn.get('install', '?')} ({ovn.get('from', '?')})",
        "ovn_binaries": binaries,
    }


def _qemu_version(runner: Runner) -> str:
    """The QEMU the lab's guests run: the host's, or the root's of ``CUTOVER_QEMU_ROOT``."""
    try:
        argv = qemu_proc.qemu_command()
    except CutoverError as e:
        return f"unusable ({e})"
    line = _first_line(runner, [*argv, "--version"])
    root = os.environ.get(qemu_proc.ROOT_ENV)
    return f"{line} (from {root})" if root else line


def _run_tool(argv: Sequence[str]) -> str:
    done = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=True,
    )
    return done.stdout


def _first_line(run: Runner, argv: Sequence[str]) -> str:
    """First non-empty output line of ``argv``, or a marker saying why there is none."""
    try:
        out = run(argv)
    except FileNotFoundError:
        return ABSENT
    except subprocess.TimeoutExpired:
        return f"unknown ({argv[0]} timed out)"
    except subprocess.CalledProcessError as e:
        return f"unknown ({argv[0]} exited {e.returncode})"
    except OSError as e:
        return f"unknown ({argv[0]}: {e.strerror or e})"
    for line in out.splitlines():
        if line.strip():
            return line.strip()
    return f"unknown ({argv[0]} printed nothing)"


def _version_number(run: Runner, argv: Sequence[str]) -> str:
    """Just the version, e.g. ``23.03.1`` from ``ovn-controller 23.03.1``.

    The program name in front adds nothing in a table whose row already names it;
    if no version-looking token is found the whole line is kept rather than lost.
    """
    line = _first_line(run, argv)
    if line == ABSENT or line.startswith("unknown ("):
        return line
    match = _VERSION_RE.search(line)
    return match.group(0) if match else line


def _read_first_line(path: Path) -> str:
    try:
        return path.read_text().strip().splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return ABSENT


def _os_release(path: Path) -> dict[str, str]:
    """Parse os-release(5): ``KEY=value`` lines, values optionally quoted."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values
