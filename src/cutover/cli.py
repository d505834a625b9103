"""The ``cutover`` command: the only place that prints and picks exit codes.

Errors of cutover's own tree print as ``Type: message`` on stderr with exit code 1;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cutover.errors import CutoverError, PrerequisiteError
from cutover.lab.load import LOAD_LEVELS
from cutover.migration.context import ACTIVATIONS, STRATEGIES

console = Console(width=None if sys.stdout.isatty() else 160)
"""Piped or captured output (make demo, CI logs) gets a table wide enough to read."""
err_console = Console(stderr=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cutover",
        description="Live-migrate VMs on OVN without losing traffic, and measure it.",
    )
    p.add_argument("--prefix", default=os.environ.get("CUTOVER_PREFIX", "cutover"),
                   help="lab prefix: names every lab resource (default: %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)

    lab = sub.add_parser("lab", help="build, inspect or remove the embedded OVN lab")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    up = lab_sub.add_parser("up", help="build central + chassis namespaces + guests")
    up.add_argument("--chassis", type=int, default=3, help="number of chassis (>= 3)")
    _guest_args(up)
    lab_sub.add_parser("down", help="remove everything the lab created (idempotent)")
    lab_sub.add_parser("status", help="show what runs")

    mig = sub.add_parser("migrate", help="live-migrate a VM of the running lab")
    mig.add_argument("vm")
    mig.add_argument("--to", required=True, dest="dst", help="destination chassis")
    _migration_args(mig)
    mig.add_argument("--strategy", default="claim", choices=STRATEGIES)
    mig.add_argument("--stall", default="none", help="ROLE:MS, e.g. dst:2000 (default none)")
    mig.add_argument("--max-bandwidth", type=float, default=None, metavar="MIB_S",
                     help="QEMU guests: migration bandwidth cap in MiB/s (default QEMU's)")

    bench = sub.add_parser("bench", help="measure the blackout per strategy on the lab")
    bench.add_argument("--strategy", action="append", choices=STRATEGIES, dest="strategies",
                       help="repeat for several (default: legacy and claim; all with --matrix)")
    bench.add_argument("--stall", action="append", dest="stalls",
                       help="ROLE:MS, e.g. dst:2000 or peer:2000; repeat for several")
    bench.add_argument("--load", action="append", dest="loads", choices=LOAD_LEVELS,
                       help="control-plane load on the destination; repeat for several")
    bench.add_argument("--activation", action="append", dest="activations",
                       choices=ACTIVATIONS, help="OVN activation strategy; repeat for several")
    bench.add_argument("--matrix", action="store_true",
                       help="strategies x {L0, L2, dst:2000 stall, peer:2000 stall}")
    bench.add_argument("--runs", type=int, default=3, help="migrations per strategy")
    bench.add_argument("--out", type=Path, default=Path("results/bench"))
    bench.add_argument("--interval-ms", type=float, default=2.0, help="probe interval")
    bench.add_argument("--chassis", type=int, default=3,
                       help="chassis of a lab the bench builds itself (>= 3)")
    bench.add_argument("--keep-lab", action="store_true",
                       help="leave a lab that the bench built running afterwards")
    _copy_args(bench)
    _guest_args(bench)
    bench.add_argument("--max-bandwidth", type=float, default=None, metavar="MIB_S",
                       help="QEMU guests: migration bandwidth cap in MiB/s (default QEMU's)")
    bench.add_argument("--floor", action="store_true",
                       help="also measure the same QEMU migration on a plain Linux bridge "
                            "(no OVN): the floor the report subtracts")
    return p


def _guest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--guest", default="emulated", choices=("emulated", "qemu"),
                   help="VM guests: emulated processes or real QEMU (TCG) (default %(default)s)")
    p.add_argument("--guest-ram", type=int, default=128, metavar="MB",
                   help="QEMU guest RAM in MiB (default %(default)s)")


def _migration_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--activation", default="rarp", choices=ACTIVATIONS)
    _copy_args(p)


def _copy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--copy-ms", type=float, default=500.0, help="memory-copy phase")
    p.add_argument("--pause-ms", type=float, default=30.0, help="stop-and-copy window")
    p.add_argument("--ready-timeout", type=float, default=30.0, help="seconds")


GIL_SWITCH_INTERVAL_S = 0.0005
"""The OVSDB IDL threads, event threads and flow-monitor readers must hand an event on
within a millisecond; CPython's default 5 ms GIL switch interval would add up to 5 ms per
hand-off to every readiness detection."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        if os.geteuid() != 0:
            raise PrerequisiteError(
                "cutover drives namespaces, TAPs and OVS daemons: run it as root"
            )
        from cutover import commands

        if args.command == "lab":
            return commands.lab(args, console)
        if args.command == "migrate":
            return commands.migrate(args, console)
        if args.command == "bench":
            return commands.bench(args, console)
        raise AssertionError(args.command)
    except CutoverError as e:
        err_console.print(f"[bold red]{type(e).__name__}[/]: {e}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err_console.print("Interrupted: run 'cutover lab status' to see what is left")
        return 130
    finally:
        from cutover.ovsdb.connection import close_all

        close_all()


def timeline_table(rows: list[tuple[float, str, str]], title: str) -> Table:
    table = Table(title=title)
    table.add_column("t (ms)", justify="right")
    table.add_column("event")
    table.add_column("detail", overflow="fold")
    for t, name, detail in rows:
        table.add_row(f"{t:9.1f}", name, detail)
    return table


if __name__ == "__main__":
    sys.exit(main())
