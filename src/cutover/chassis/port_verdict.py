"""port-ready's verdict, as pure functions of what the wait has seen: the SB claim,
``ovn-installed``, and this chassis' flows for the port (:class:`~cutover.chassis.flows.PortFlows`).
:class:`~cutover.chassis.port_watch.LocalPortWatch` gathers those inputs, event-driven, and
asks :func:`decide` (or :func:`open_decision`, pre-activation's wait) at every event; the
unit tests drive these functions with captured dumps. Why each input is needed, and why
none is enough alone: :mod:`cutover.chassis.port_watch` and docs/readiness.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from cutover.chassis.flows import PortFlows

INSTALLED_GRACE_MS = 300.0
"""How long complete flows may precede ``ovn-installed`` before the build is taken to
never set it for an additional chassis. Measured here (23.03.1): the ``ovn-installed``
event reaches us 10-25 ms after the flows are on the bridge (it is written one main-loop
iteration after the barrier reply, ``ovn-installed-ts`` is the barrier time)."""
PATH_INSTALLED = "ovn-installed+flows"
PATH_FLOWS_ONLY = "flows-only (no ovn-installed for the additional chassis)"


WAIT_CLAIM = "the SB claim by this chassis"
WAIT_FLOW_CHECK = "a flow check (no ofport or port binding yet)"
WAIT_PHYSICAL = "the port's physical flows (in_port -> pipeline, reg15 -> output)"
WAIT_LOOKUP = "the port's L2 lookup flow (its switch's logical pipeline)"
WAIT_INSTALLED = "ovn-installed, or the flows-only grace"
WAIT_OPEN = "the port's rarp blocks to be lifted (its activation here)"
OPEN_CHECK = "port-open"
WAIT_RARP = ("the port's rarp blocks (ingress drop, egress drop, RARP to the controller: the "
             "SB says the port awaits its activation here)")


@dataclass(frozen=True)
class Decision:
    ready: bool
    path: str | None = None
    recheck_at_ms: float | None = None
    """Wake up by then even without an event (the flows-only grace)."""
    waiting_for: tuple[str, ...] = ()
    """What is missing when not ready (for timeouts and status)."""
    claim_from_flows: bool = False
    """The claim was known from the rarp blocks, before the SB row reached us
    (:func:`claim_shown_by_flows`)."""


def claim_shown_by_flows(flows: PortFlows | None, awaits_rarp: bool,
                         blocks_new: bool = True) -> bool:
    """The chassis' own flows prove its claim is committed in the SB: all three rarp
    activation flows are there while the SB says the port awaits its rarp activation here,
    and they were NOT there when the flow monitors started (``blocks_new``: blocks left
    over from an earlier binding on a reused ofport, by a controller that has not caught up
    with a release, prove nothing about this claim).

    ovn-controller installs them only for a chassis listed in the ``Port_Binding``'s
    ``additional_chassis`` *as its SB IDL holds it* (physical.c
    ``setup_activation_strategy`` loops over ``binding->additional_chassis``; the same on
    23.03 and on OVN main, 2026), and an IDL holds only what the SB server committed and
    sent back - never a write of its own still in flight. So the blocks on br-int mean the
    SB committed the claim and the controller has seen that commit, often before the SB
    update reaches the agent's own SB connection (the verdict came from the blocks in 4 of
    20 port-ready/path-ready runs of the 2026-11-30 latency bench, 3 chassis). The
    first-port race (an ``ovn-installed``
    before the claim is committed) shows no blocks (docs/readiness.md), so it still
    waits for the claim."""
    return (awaits_rarp and blocks_new and flows is not None and flows.physical
            and flows.blocked and not flows.partially_blocked)


def complete(flows: PortFlows | None, awaits_rarp: bool = False) -> bool:
    """The port's flows are all there: both physical flows, and - while the SB says the
    port awaits its rarp activation on this chassis - the rarp blocks too. OVN 26.03 was
    seen setting ``ovn-installed`` on the plain, unblocked flows and adding the blocks in a
    later iteration; a RARP sent before those arrive would never reach the controller."""
    if flows is None or not flows.installed:
        return False
    return flows.blocked or not awaits_rarp


def decide(installed: bool, claimed: bool, flows: PortFlows | None,
           complete_since_ms: float | None, now: float,
           grace_ms: float = INSTALLED_GRACE_MS, awaits_rarp: bool = False,
           blocks_new: bool = True) -> Decision:
    """The version-path decision (pure). ``complete_since_ms``: when the flows (physical
    and the L2 lookup, and the rarp blocks while the port awaits its activation here,
    ``awaits_rarp``: see :func:`complete`) were first seen complete (None if they are not).

    ``ovn-installed`` never stands in for the claim or for the logical flows: a build that
    reports it early (first port on a switch) is caught by either. The claim is the SB
    row (``claimed``) or the rarp blocks that only a committed claim makes the controller
    install (:func:`claim_shown_by_flows`; ``blocks_new``: they were not there when the
    watch started)."""
    missing: list[str] = []
    from_flows = not claimed and claim_shown_by_flows(flows, awaits_rarp, blocks_new)
    if not claimed and not from_flows:
        missing.append(WAIT_CLAIM)
    if flows is None:
        missing.append(WAIT_FLOW_CHECK)
    else:
        if not flows.physical:
            missing.append(WAIT_PHYSICAL)
        if not flows.lookup.present:
            missing.append(WAIT_LOOKUP)
        if flows.physical and (flows.partially_blocked or (awaits_rarp and not flows.blocked)):
            missing.append(WAIT_RARP)
    if missing:
        return Decision(False, waiting_for=tuple(missing))
    if installed:
        return Decision(True, PATH_INSTALLED, claim_from_flows=from_flows)
    if complete_since_ms is None:
        return Decision(False, waiting_for=(WAIT_INSTALLED,))
    if now - complete_since_ms >= grace_ms:
        return Decision(True, PATH_FLOWS_ONLY, claim_from_flows=from_flows)
    return Decision(False, recheck_at_ms=complete_since_ms + grace_ms,
                    waiting_for=(WAIT_INSTALLED,))  # fmt: skip


def open_decision(flows: PortFlows | None) -> Decision:
    """Pre-activation's verdict (pure): the port's flows are installed here and none of its
    rarp blocks (ingress drop, egress drop, RARP to the controller) is left, so traffic
    passes to and from the TAP."""
    if flows is not None and flows.installed and not flows.blocked:
        return Decision(True, "open")
    missing = [WAIT_FLOW_CHECK] if flows is None else []
    if flows is not None and not flows.physical:
        missing.append(WAIT_PHYSICAL)
    if flows is not None and not flows.lookup.present:
        missing.append(WAIT_LOOKUP)
    return Decision(False, waiting_for=(*missing, WAIT_OPEN))
