"""The ``cutover`` command: the only place that prints and picks exit codes.

Errors of cutover's own tree print as ``Type: message`` on stderr, one line: a bad request
(:class:`~cutover.errors.InputError`, including every option refused while parsing, before
anything is built or changed) exits with 2, any other error with 1. Anything else is a bug
and keeps its traceback. Text that comes from outside (SB rows, error messages, timeline
details) is printed literally, never read as rich markup: ``peers [hv3]`` stays as it is.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.text import Text

from cutover import bounds
from cutover.bench.faults import FAULT_KINDS, FaultPlan, StallPlan
from cutover.errors import CutoverError, InputError, PrerequisiteError
from cutover.lab.load import LOAD_LEVELS
from cutover.lab.ovn_install import parse_ovn
from cutover.migration.context import ACTIVATIONS, GATES
from cutover.migration.strategies import STRATEGY_NAMES

console = Console(width=None if sys.stdout.isatty() else 160)
"""Piped or captured output (make demo, CI logs) gets a table wide enough to read."""
err_console = Console(stderr=True, soft_wrap=True)
"""Errors are one line each, never wrapped: a log or a test reads them whole."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a refused option is one ``InputError: ...`` line and exit code 2
    (argparse's own usage dump would bury the message)."""

    def error(self, message: str) -> NoReturn:
        raise _Refused(f"{message} (see '{self.prog} --help')")


class _Refused(InputError):
    pass


def _bounded(bound: bounds.Bound) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            return bounds.parse(bound, text)
        except InputError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{bound.name} ")) from None

    parse.__name__ = bound.name.lstrip("-")  # argparse names the type in some messages
    return parse


def _stall_spec(text: str) -> str:
    try:
        return StallPlan.parse(text).spec
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _fault_spec(text: str) -> str:
    try:
        return FaultPlan.parse(text).spec
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _ovn(text: str) -> str:
    try:
        return parse_ovn(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--ovn ")) from None


OVN_HELP = ("OVN/OVS to run: host (this machine's packages), 25.03 (Debian trixie) or 26.03 "
            "(Debian sid), built once into a cached Debian root")


CLUSTERED_HELP = ("NB and SB each as a 3-member RAFT cluster (ovsdb-tool create-cluster/"
                  "join-cluster); every client gets the member list")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cutover",
        epilog="CUTOVER_PREFIX in the environment sets --prefix.",
        description="Live-migrate VMs on OVN without losing traffic, and measure it.",
    )
    p.add_argument("--prefix", default=os.environ.get("CUTOVER_PREFIX", "cutover"),
                   help="lab prefix: names every lab resource (default: %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)

    lab = sub.add_parser("lab", help="build, inspect or remove the embedded OVN lab")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    up = lab_sub.add_parser("up", help="build central + chassis namespaces + guests")
    up.add_argument("--chassis", type=_bounded(bounds.CHASSIS), default=3,
                    help="number of chassis (3-99)")
    up.add_argument("--ovn", type=_ovn, default="host", help=OVN_HELP)
    up.add_argument("--ssl", action="store_true",
                    help="NB/SB on ssl: with an ovs-pki PKI; every client uses a certificate")
    up.add_argument("--clustered", action="store_true", help=CLUSTERED_HELP)
    _guest_args(up)
    lab_sub.add_parser("down", help="remove everything the lab created (idempotent)")
    lab_sub.add_parser("status", help="show what runs")
    lab_sub.add_parser("config", help="print the running lab's site as a --config TOML file")
    lab_sub.add_parser("restart-guests", help="start (or resume) each VM's guest on its chassis")
    lab_sub.add_parser("restart-agents", help="start the agent of each chassis whose agent died")

    agent = sub.add_parser("agent", help="serve the per-chassis agent API (run on each node)")
    agent.add_argument("--chassis", required=True, help="this node's OVN chassis name")
    agent.add_argument("--ovs-remote", required=True, help="unix:/path/db.sock of this node")
    agent.add_argument("--sb-remote", required=True, help="the OVN SB, where readiness is "
                       "published")
    agent.add_argument("--controller-ctl", help="ovn-controller's unixctl socket")
    agent.add_argument("--integration-bridge", default="br-int")
    agent.add_argument("--ofctl", default="ovs-ofctl",
                       help="this node's ovs-ofctl command, e.g. a newer OVS through its "
                       "root's loader (shell words; default: ovs-ofctl on PATH)")
    agent.add_argument("--listen", required=True, help="unix:/path or https://ADDRESS:PORT")
    agent.add_argument("--token-file", required=True, type=Path,
                       help="bearer token every request must carry (mode 0600)")
    agent.add_argument("--tls-cert", type=Path)
    agent.add_argument("--tls-key", type=Path)
    agent.add_argument("--tls-client-ca", type=Path,
                       help="require client certificates signed by this CA")
    agent.add_argument("--ovsdb-ssl-key", type=Path,
                       help="this node's OVSDB private key, for an ssl: --sb-remote")
    agent.add_argument("--ovsdb-ssl-cert", type=Path, help="... its certificate")
    agent.add_argument("--ovsdb-ssl-ca", type=Path, help="... the CA of the SB's certificate")
    agent.add_argument("--allow-faults", action="store_true",
                       help="allow controller pause/resume (fault injection; labs only)")
    agent.add_argument("--plugger", choices=("os-vif", "tap"), default="os-vif",
                       help="plug VIFs with the os-vif library (default) or its steps "
                            "written out")
    agent.add_argument("--state-dir", type=Path,
                       help="where the agent keeps its os-vif configuration and its state "
                            "file (a timed controller pause's deadline)")

    mig = sub.add_parser("migrate", help="live-migrate a VM of the running lab (or of the "
                         "deployment a --config file describes)")
    mig.add_argument("vm", help="the VM to migrate (see 'cutover lab status')")
    mig.add_argument("--to", required=True, dest="dst", help="destination chassis")
    mig.add_argument("--config", type=Path, metavar="FILE",
                     help="a deployment's TOML config (docs/deployment.md): migrate there, "
                          "not in the lab")
    _migration_args(mig)
    # None = "not given": a --config file's [timeouts] apply, else 30 s
    mig.set_defaults(ready_timeout=None, activation_timeout=None)
    mig.add_argument("--strategy", default="claim", choices=STRATEGY_NAMES,
                     help="what ready means before the switchover (default: %(default)s)")
    mig.add_argument("--gate", default="before-copy", choices=GATES,
                     help="where readiness gates the migration: before the memory copy, "
                          "before the switchover (copy overlapped, source held stopped in "
                          "pre-switchover if not ready), or before QEMU may converge (copy "
                          "overlapped, source kept running); default: %(default)s")
    mig.add_argument("--stall", default="none", type=_stall_spec,
                     help="ROLE:MS, e.g. dst:2000 (default none)")
    mig.add_argument("--max-bandwidth", type=_bounded(bounds.MAX_BANDWIDTH_MIB), default=None,
                     metavar="MIB_S",
                     help="QEMU guests: migration bandwidth cap in MiB/s (default QEMU's)")

    rec = sub.add_parser("recover", help="roll back (before the switchover) or complete "
                         "(after it) migrations a crashed 'cutover migrate' left half-done")
    rec.add_argument("vm", nargs="?", help="only this VM (default: every unfinished one)")
    rec.add_argument("--config", type=Path, metavar="FILE",
                     help="a deployment's TOML config (its [compute] state_dir holds the "
                          "journal): recover there, not in the lab")
    config = sub.add_parser("config", help="check a deployment's TOML config")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate FILE (nothing connects), and with "
                                  "--connect reach its NB, SB, agents and VMs' bindings")
    check.add_argument("file", type=Path)
    check.add_argument("--connect", action="store_true",
                       help="also connect: NB/SB over their remotes, each agent's health")

    bench = sub.add_parser("bench", help="measure the blackout per strategy on the lab")
    bench.add_argument("--strategy", action="append", choices=STRATEGY_NAMES, dest="strategies",
                       help="repeat for several (default: legacy and claim; all with --matrix)")
    bench.add_argument("--stall", action="append", dest="stalls", type=_stall_spec,
                       help="ROLE:MS, e.g. dst:2000 or peer:2000; repeat for several")
    bench.add_argument("--fault", action="append", dest="faults", type=_fault_spec,
                       metavar="KIND[:MS]",
                       help="a control-plane fault in each migration; repeat for several: "
                       + "; ".join(f"{k.name} (MS: {k.param}, default {k.default_ms:g}"
                                   f"{', --clustered' if k.clustered else ''})"
                                   for k in FAULT_KINDS.values()))
    bench.add_argument("--load", action="append", dest="loads", choices=LOAD_LEVELS,
                       help="control-plane load on the destination; repeat for several")
    bench.add_argument("--stall-from", choices=("plug", "prepare"), default="plug",
                       help="start each --stall at the destination plug (default) or right "
                            "before the network preparation (requested-chassis=src,dst): the "
                            "latter delays readiness by the whole stall, for comparing gates")
    bench.add_argument("--gate", action="append", dest="gates", choices=GATES,
                       help="where readiness gates the migration (see migrate --gate); "
                            "repeat to compare several in one bench (default: before-copy)")
    bench.add_argument("--activation", action="append", dest="activations",
                       choices=ACTIVATIONS, help="OVN activation strategy; repeat for several")
    bench.add_argument("--matrix", action="store_true",
                       help="strategies x {L0, L2, dst:2000 stall, peer:2000 stall}")
    bench.add_argument("--runs", type=_bounded(bounds.RUNS), default=3,
                       help="migrations per strategy and condition (1-1000, default: %(default)s)")
    bench.add_argument("--out", type=Path, default=Path("results/bench"),
                       help="directory for bench.json, report.md and the plots "
                            "(default: %(default)s, relative to here)")
    bench.add_argument("--interval-ms", type=_bounded(bounds.INTERVAL_MS), default=2.0,
                       help="probe interval (0.5-1000 ms)")
    bench.add_argument("--chassis", type=_bounded(bounds.CHASSIS), default=None,
                       help="chassis of a lab the bench builds itself (3-99, default 3; "
                            "must match a running lab)")
    bench.add_argument("--ovn", type=_ovn, action="append", dest="ovns", help=OVN_HELP
                       + "; repeat to compare versions (one lab each, built in turn)")
    bench.add_argument("--clustered", action="store_true",
                       help=CLUSTERED_HELP + " (for a lab the bench builds; must match a "
                       "running lab)")
    bench.add_argument("--keep-lab", action="store_true",
                       help="leave a lab that the bench built running afterwards")
    _copy_args(bench)
    _guest_args(bench)
    bench.add_argument("--max-bandwidth", type=_bounded(bounds.MAX_BANDWIDTH_MIB), default=None,
                       metavar="MIB_S",
                       help="QEMU guests: migration bandwidth cap in MiB/s (default QEMU's)")
    bench.add_argument("--floor", action="store_true",
                       help="also measure the same QEMU migration on a plain Linux bridge "
                            "(no OVN): the floor the report subtracts")
    return p


def _guest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--guest", default="emulated", choices=("emulated", "qemu", "libvirt"),
                   help="VM guests: emulated processes, real QEMU (TCG) over QMP, or QEMU "
                        "through one libvirtd per chassis (default %(default)s)")
    p.add_argument("--guest-ram", type=_bounded(bounds.GUEST_RAM_MB), default=128, metavar="MB",
                   help="QEMU guest RAM in MiB (default %(default)s)")


def _migration_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--activation", default="rarp", choices=ACTIVATIONS,
                   help="OVN activation-strategy while both chassis hold the port; pre: "
                        "rarp, and cutover activates the destination itself before the "
                        "switchover; pre-gated: pre, and the destination TAP drops what "
                        "it is sent from before the claim until the source stops (qemu "
                        "guests) "
                        "(default: %(default)s)")
    _copy_args(p)


def _copy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--copy-ms", type=_bounded(bounds.COPY_MS), default=500.0,
                   help="memory-copy phase (0-600000 ms, default: %(default)s)")
    p.add_argument("--pause-ms", type=_bounded(bounds.PAUSE_MS), default=30.0,
                   help="stop-and-copy window (0-60000 ms, default: %(default)s)")
    p.add_argument("--ready-timeout", type=_bounded(bounds.READY_TIMEOUT_S), default=30.0,
                   help="seconds the switchover may wait for readiness (> 0, <= 3600)")
    p.add_argument("--activation-timeout", type=_bounded(bounds.ACTIVATION_TIMEOUT_S),
                   default=30.0, help="seconds for the destination to become the only "
                   "chassis after the switchover (> 0, <= 3600)")


GIL_SWITCH_INTERVAL_S = 0.0005
"""The OVSDB IDL threads, event threads and flow-monitor readers must hand an event on
within a millisecond; CPython's default 5 ms GIL switch interval would add up to 5 ms per
hand-off to every readiness detection."""


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except _Refused as e:
        _print_error(e)
        return 2
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
        if args.command == "recover":
            return commands.recover(args, console)
        if args.command == "bench":
            return commands.bench(args, console)
        if args.command == "agent":
            return commands.agent(args)
        if args.command == "config":
            return commands.config_check(args, console)
        raise AssertionError(args.command)
    except InputError as e:
        _print_error(e)
        return 2
    except CutoverError as e:
        _print_error(e)
        return 1
    except KeyboardInterrupt:
        err_console.print("Interrupted: run 'cutover lab status' to see what is left")
        return 130
    finally:
        from cutover.ovsdb.connection import close_all

        close_all()


def _print_error(e: CutoverError) -> None:
    """One line; notes (a second failure on the way out, e.g. a stall that could not be
    resumed after the migration failed) follow the message after "; also: "."""
    name = "InputError" if isinstance(e, _Refused) else type(e).__name__
    also = "".join(f"; also: {note}" for note in getattr(e, "__notes__", ()))
    err_console.print(Text.assemble((name, "bold red"), ": ", str(e), also), highlight=False)


if __name__ == "__main__":
    sys.exit(main())
