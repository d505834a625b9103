"""The leftover scan: after a migration - finished, rolled back, or hit by a fault - nothing
of it may be left anywhere.

What it checks, for every VM of the site at the chassis the site says it runs on:

- NB: the port's ``options:requested-chassis`` is that chassis alone and it has no
  ``activation-strategy`` (a half-done migration leaves ``src,dst`` + ``rarp``);
- SB: its ``Port_Binding`` is bound to that chassis, with empty ``additional_chassis``
  and ``requested_additional_chassis``;
- SB: no ``Chassis_Private.external_ids`` key of cutover's (published readiness) on any
  chassis;
- every chassis, through the chassis seam (its agent): the VM's TAP/OVS port exists on
  its chassis and on no other, and no TAP gate of ours is left closed on it (``pre-gated``:
  a TAP that drops all it is sent); with a hypervisor, no guest of the VM runs elsewhere;
- whatever the caller adds (``extra``): the lab's processes against its manifest and
  paused controllers (:meth:`cutover.lab.faults.LabFaults.leftovers`).

OVN converges asynchronously (a destination releases its claim a few ms after
``requested-chassis`` moved back), so the scan first waits for a sync point instead of
sleeping: it bumps ``NB_Global.nb_cfg`` and waits - an event, registered before the bump -
until northd reports ``NB_Global.hv_cfg`` caught up, i.e. every chassis has processed every
NB change made so far. A chassis that does not catch up is itself a finding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cutover.chassis.base import Vif
from cutover.chassis.published import KEY_PREFIX
from cutover.errors import CutoverError
from cutover.guest.base import GuestState
from cutover.migration.clients import SiteClients
from cutover.ovsdb.nb import ACTIVATION_STRATEGY
from cutover.site import Site, VmSpec

SYNC_TIMEOUT_S = 30.0
STRAY_GUEST_STATES = ("running", "paused", "incoming")


class GuestStates(Protocol):
    """What the scan asks of a hypervisor (``cutover.guest.base.Hypervisor`` has it)."""

    def guest_state(self, vm: VmSpec, chassis: str) -> GuestState: ...


@dataclass(frozen=True)
class LeftoverScan:
    items: tuple[str, ...]
    """What is left, one line each (empty: clean)."""
    sync_ms: float | None
    """How long the sync point took (None: it timed out, which is an item)."""

    @property
    def clean(self) -> bool:
        return not self.items

    def to_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "items": list(self.items), "sync_ms": self.sync_ms}


def sync_hypervisors(clients: SiteClients, timeout_s: float = SYNC_TIMEOUT_S) -> int:
    """Return the ``nb_cfg`` reached once every chassis has processed every NB change made so far
    (``NB_Global.hv_cfg`` >= a fresh ``nb_cfg`` bump); WaitTimeout with the row seen."""
    target: list[int] = []

    def caught_up(row: Any) -> bool:
        return bool(target and int(row.hv_cfg) >= target[0])

    def seen() -> str:
        rows = clients.nb.rows("NB_Global")
        return (f"NB_Global nb_cfg={rows[0].nb_cfg} hv_cfg={rows[0].hv_cfg}" if rows
                else "no NB_Global row")

    watch = clients.nb.register("NB_Global", caught_up,
                                "every chassis to catch up with the NB (hv_cfg)", seen)
    try:
        target.append(clients.nb.bump_nb_cfg())
        watch.recheck(clients.nb.rows("NB_Global"))
        watch.wait(timeout_s)
    finally:
        watch.cancel()
    return target[0]


def scan(site: Site, clients: SiteClients, hypervisor: GuestStates | None = None,
         extra: Sequence[Callable[[], list[str]]] = (),
         sync_timeout_s: float = SYNC_TIMEOUT_S) -> LeftoverScan:
    """Everything left of migrations on ``site`` (see the module docstring)."""
    items: list[str] = []
    started = time.monotonic()
    sync_ms: float | None
    try:
        sync_hypervisors(clients, sync_timeout_s)
        sync_ms = round((time.monotonic() - started) * 1000.0, 1)
    except CutoverError as e:
        sync_ms = None
        items.append(f"sync: {type(e).__name__}: {e}")
    for vm in site.vms:
        try:
            options = clients.nb.lsp_options(vm.lsp)
        except CutoverError as e:
            items.append(f"NB {vm.lsp}: {e}")
            continue
        requested = options.get("requested-chassis", "")
        if requested not in ("", vm.chassis):
            items.append(f"NB {vm.lsp}: requested-chassis={requested} (expected {vm.chassis})")
        if ACTIVATION_STRATEGY in options:
            items.append(f"NB {vm.lsp}: {ACTIVATION_STRATEGY}={options[ACTIVATION_STRATEGY]}")
        state = clients.sb.binding(vm.lsp)
        if state is None:
            items.append(f"SB: no Port_Binding for {vm.lsp}")
        elif (state.chassis != vm.chassis or state.additional
              or state.requested_additional):  # fmt: skip
            items.append(f"SB {state} (expected chassis={vm.chassis} only)")
    for row in clients.sb.rows("Chassis_Private"):
        keys = sorted(k for k in row.external_ids if str(k).startswith(KEY_PREFIX))
        if keys:
            items.append(f"SB Chassis_Private {row.name}: external_ids {', '.join(keys)}")
    for vm in site.vms:
        vif = Vif.of(vm)
        for name, ch in clients.chassis.items():
            try:
                plugged = ch.is_plugged(vif)
            except CutoverError as e:
                items.append(f"{name}: cannot tell whether {vm.tap} is plugged ({e})")
                continue
            if plugged and name != vm.chassis:
                items.append(f"{name}: TAP/OVS port {vm.tap} of {vm.name} (it runs on "
                             f"{vm.chassis})")
            if not plugged and name == vm.chassis:
                items.append(f"{name}: {vm.name}'s own TAP/OVS port {vm.tap} is missing")
            if plugged:
                try:
                    gate = ch.tap_gate(vif)
                except CutoverError as e:
                    items.append(f"{name}: cannot tell whether {vm.tap}'s gate is closed ({e})")
                else:
                    if gate.closed:
                        items.append(f"{name}: {vm.tap} of {vm.name} has its TAP gate closed "
                                     f"(dropped {gate.dropped} frames)")
            if hypervisor is not None and name != vm.chassis:
                try:
                    state_ = hypervisor.guest_state(vm, name)
                except CutoverError as e:
                    items.append(f"{name}: cannot tell whether a guest of {vm.name} runs "
                                 f"({e})")
                    continue
                if state_.state in STRAY_GUEST_STATES:
                    items.append(f"{name}: a guest of {vm.name} is {state_}")
    for check in extra:
        try:
            items += check()
        except CutoverError as e:
            items.append(f"scan: {type(e).__name__}: {e}")
    return LeftoverScan(tuple(items), sync_ms)
