"""What must hold before (and after) a measured migration for its number to mean anything.

A bench that migrates a VM the client cannot reach, or a VM that is not where the site
description says, still produces a "blackout" - 100 % loss for the whole capture - and
would report it as a result. These checks turn such runs into failed runs with an error
that says what was wrong, so that no figure comes from a run that could not measure:

- :func:`check_site`: the SB agrees with the site (the VM's port is bound to its source
  and to no other chassis; the client's port is bound to its chassis, which is neither
  the source nor the destination, so the client stays a third party);
- :func:`check_baseline`: before the migration the client's probes are answered
  steadily (the path works before we break it); only the capture from that steady run on
  is analysed, so a path still settling after the previous run is not counted;
- :func:`unmeasurable`: after the migration, the longest silence must not run into the
  end of the capture (the VM answered again before the prober stopped), else the
  blackout is only a lower bound.
"""

from __future__ import annotations

import time

from cutover.errors import MeasurementError
from cutover.ovsdb.sb import SbClient
from cutover.probe.analysis import ProbeSummary
from cutover.probe.client import ProbeStatus
from cutover.site import VmSpec

BASELINE_STEADY = 50
"""Probes in a row that must be answered before a migration starts (100 ms at 2 ms): the
path is established (after the previous run, a peer may still be updating its tunnels)."""
BASELINE_TIMEOUT_S = 10.0


def check_site(sb: SbClient, vm: VmSpec, client: VmSpec, dst: str) -> None:
    """Raise :class:`MeasurementError` unless the SB binds ``vm`` only to ``vm.chassis`` and
    ``client`` to ``client.chassis``, a chassis other than the source and ``dst``."""
    if client.chassis in (vm.chassis, dst):
        raise MeasurementError(
            f"client {client.name} is on {client.chassis}, the migration's "
            f"{'source' if client.chassis == vm.chassis else 'destination'}: it must probe "
            "from a third chassis; pick another destination or client"
        )
    for port, where in ((vm, vm.chassis), (client, client.chassis)):
        state = sb.binding(port.lsp)
        if state is None:
            raise MeasurementError(
                f"{port.name}: no SB Port_Binding for {port.lsp}; is the site description "
                "for this OVN? ('cutover lab status')"
            )
        if state.chassis != where or state.additional:
            raise MeasurementError(
                f"{port.name} should be bound to {where} only, but the SB says {state}; the "
                "site description is out of date or an earlier migration did not finish "
                "('cutover lab status')"
            )


def check_baseline(steady_from: int | None, status: ProbeStatus, vm: VmSpec, client: VmSpec,
                   timeout_s: float) -> None:
    """Raise :class:`MeasurementError` unless the client's probes became steadily answered
    (:data:`BASELINE_STEADY` in a row) within ``timeout_s`` before the migration."""
    if steady_from is not None:
        return
    raise MeasurementError(
        f"{vm.name} does not answer {client.name} steadily before the migration (no "
        f"{BASELINE_STEADY} probes in a row within {timeout_s:g} s; {status.received} of "
        f"{status.sent} answered, last reply {_ago(status.last_recv_ms)}): nothing could be "
        f"measured; check that the VM's guest runs on {vm.chassis} ('cutover lab status')"
    )


def unmeasurable(summary: ProbeSummary, vm: VmSpec, client: VmSpec) -> MeasurementError:
    """The error for a capture whose longest silence is open (a lower bound only)."""
    assert summary.longest is not None and summary.longest.open
    return MeasurementError(
        f"{vm.name} did not answer {client.name} during the capture's first or last "
        f"{summary.blackout_ms:.1f} ms ({summary.probes_lost} of {summary.probes_sent} probes "
        "lost): the silence runs into the capture's edge, so the blackout is unknown; the "
        "migration left the VM unreachable"
    )


def _ago(ms: float | None) -> str:
    if ms is None:
        return "never"
    return f"{time.time() * 1000.0 - ms:.0f} ms ago"
