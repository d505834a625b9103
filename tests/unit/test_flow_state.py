"""The flow monitor's live copy (:mod:`cutover.chassis.flowstate`) and the verdicts made
from it: the same as from ``dump-flows`` for the captured port states, and unknown (so a
dump is taken) whenever the stream cannot say which flow changed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cutover.chassis.flows import Flow, PortTarget, classify, parse_flows
from cutover.chassis.flowstate import UNKNOWN_PRIORITY, FlowState, merged, parse_update
from cutover.chassis.port_verdict import WAIT_CLAIM, claim_shown_by_flows, decide

# the captures of test_port_ready_flows (see its docstring): vm1 is ofport 3, port key 1,
# datapath key 1; ``race_*`` the first-port race, ``claimed_*`` the same port claimed
DATA = Path(__file__).parent / "data"
VM1 = PortTarget(ofport=3, port_key=1, datapath_key=1, mac="02:00:00:00:00:01")


Capture = tuple[list[Flow], list[Flow], list[Flow]]


def _capture(name: str) -> Capture:
    a, b, c = (parse_flows((DATA / f"ofctl_{name}_{k}.txt").read_text())
               for k in ("in_port", "reg15", "l2"))  # fmt: skip
    return a, b, c


RACE = _capture("race")
CLAIMED = _capture("claimed")

# captured on this machine (OVS 3.1 ``ovs-ofctl --no-names monitor br-int watch:table=0``;
# the first flow's actions abridged)
CAPTURED = """\
NXST_FLOW_MONITOR reply (xid=0x2):
 event=ADDED table=0 cookie=0xc9c90db8 in_port=3 actions=load:0x1->OXM_OF_METADATA[],resubmit(,8)
 event=ADDED table=0 cookie=0
NXST_FLOW_MONITOR reply (xid=0x0):
 event=ADDED table=0 cookie=0 in_port=999
NXST_FLOW_MONITOR reply (xid=0x0):
 event=MODIFIED table=0 cookie=0 in_port=999 actions=resubmit(,8)
NXST_FLOW_MONITOR reply (xid=0x0):
 event=DELETED reason=delete table=0 cookie=0 in_port=999 actions=resubmit(,8)
"""


def _monitor_line(flow: Flow, event: str = "ADDED") -> str:
    """How ``ovs-ofctl monitor`` prints ``flow``: no priority, no ``actions=`` for a drop."""
    match = ",".join(k if v == "" else f"{k}={v}" for k, v in flow.match.items())
    actions = "" if flow.is_drop else f" actions={flow.actions}"
    reason = " reason=delete" if event == "DELETED" else ""
    return f" event={event}{reason} table={flow.table} cookie=0x1 {match}{actions}"


def _state(*dumps: list[Flow]) -> FlowState:
    state = FlowState()
    for flows in dumps:
        for f in flows:
            u = parse_update(_monitor_line(f))
            assert u is not None
            state.apply(u, 1.0)
    state.mark_complete()
    return state


def test_parse_captured_monitor_lines() -> None:
    updates = [u for u in map(parse_update, CAPTURED.splitlines()) if u is not None]
    assert [u.event for u in updates] == ["ADDED", "ADDED", "ADDED", "MODIFIED", "DELETED"]
    first = updates[0].flow
    assert (first.table, first.match, first.priority) == (0, {"in_port": "3"}, UNKNOWN_PRIORITY)
    assert first.actions.endswith("resubmit(,8)")
    assert updates[1].flow.match == {} and updates[1].flow.is_drop  # the table's miss flow
    assert updates[2].flow.actions == "drop"  # a drop prints no actions
    assert updates[4].flow.match == {"in_port": "999"}  # "reason=" is not a match field
    rarp = parse_update(" event=ADDED table=0 cookie=0x5 rarp,in_port=3 actions=controller(x)")
    assert rarp is not None and rarp.flow.match == {"rarp": "", "in_port": "3"}
    assert parse_update(" event=ABBREV xid=0x1234") is None
    assert parse_update("NXST_FLOW_MONITOR reply (xid=0x0):") is None


def test_replaying_the_captured_stream() -> None:
    state = FlowState()
    assert state.flows() is None  # initial replies not all read yet
    for line in CAPTURED.splitlines():
        u = parse_update(line)
        if u is not None:
            state.apply(u, 2.0)
    state.mark_complete()
    flows = state.flows()
    assert flows is not None and len(flows) == 2  # in_port=999 came and went
    assert state.changed_ms == 2.0 and state.usable


@pytest.mark.parametrize("sample", [CLAIMED, RACE], ids=["claimed", "race"])
def test_live_copy_judges_as_the_dumps_do(sample: Capture) -> None:
    """The captured port states, fed through monitor lines (no priorities): the same
    verdict as from the three dumps, blocks included."""
    live = merged([_state(d) for d in sample])  # one monitor process per filter
    assert live is not None
    assert classify(live, live, live, VM1) == classify(*sample, VM1)
    # a flow two filters match (egress port security: reg15 AND the MAC) counts once
    assert len(live) < sum(len(d) for d in sample)
    assert merged([_state(sample[0]), FlowState()]) is None  # one copy incomplete
    state = FlowState()
    state.mark_complete()  # nothing there when the monitor started...
    for f in sample[0]:
        state.apply(parse_update(_monitor_line(f)) or pytest.fail(), 9.0)
    assert state.initial() == [] and len(state.flows() or []) == len(sample[0])  # ...since


def test_open_and_blocked_captures_from_the_live_copy() -> None:
    for name, ofport, blocked in (("open", 3, False), ("blocked", 5, True)):
        target = PortTarget(ofport=ofport, port_key=1, datapath_key=1, mac=VM1.mac)
        dumps = [parse_flows((DATA / f"ofctl_{name}_{k}.txt").read_text())
                 for k in ("in_port", "reg15")]  # fmt: skip
        live = merged([_state(d) for d in dumps])
        assert live is not None
        flows = classify(live, live, [], target)
        assert flows == classify(dumps[0], dumps[1], [], target)
        assert flows.physical and flows.blocked is blocked
        assert not flows.partially_blocked
        assert flows.ingress_blocked is blocked and flows.egress_blocked is blocked


def test_delete_and_modify_keep_the_copy_exact() -> None:
    drop = Flow(0, 1000, {"in_port": "3"}, "drop")
    port = Flow(0, 100, {"in_port": "3"}, "resubmit(,8)")
    state = _state([drop, port])
    assert len(state.flows() or []) == 2
    # the block goes away at activation: the delete names it by its actions
    state.apply(parse_update(_monitor_line(drop, "DELETED")) or pytest.fail(), 3.0)
    assert [f.actions for f in state.flows() or []] == ["resubmit(,8)"]
    # one flow with that match: a modify is unambiguous
    state.apply(parse_update(_monitor_line(replace(port, actions="resubmit(,9)"), "MODIFIED"))
                or pytest.fail(), 4.0)  # fmt: skip
    assert [f.actions for f in state.flows() or []] == ["resubmit(,9)"]


def test_ambiguous_or_unknown_changes_give_the_copy_up() -> None:
    drop = Flow(0, 1000, {"in_port": "3"}, "drop")
    port = Flow(0, 100, {"in_port": "3"}, "resubmit(,8)")
    state = _state([drop, port])
    # which of the two flows with this match was modified? The stream does not say
    state.apply(parse_update(_monitor_line(replace(port, actions="resubmit(,9)"), "MODIFIED"))
                or pytest.fail(), 4.0)  # fmt: skip
    assert state.flows() is None and not state.usable
    assert state.lost is not None and "no priority" in state.lost

    state = _state([port])
    state.apply(parse_update(_monitor_line(drop, "DELETED")) or pytest.fail(), 5.0)
    assert state.flows() is None and "never reported" in (state.lost or "")

    state = _state([port])
    state.lose("the switch paused the flow monitor (updates dropped)")
    assert state.flows() is None


def test_the_rarp_blocks_show_a_committed_claim() -> None:
    """ovn-controller installs the blocks only for a chassis in the committed
    ``additional_chassis``: with them the claim need not wait for the SB row."""
    claimed = classify(*CLAIMED, VM1)
    assert claimed.blocked and claim_shown_by_flows(claimed, awaits_rarp=True)
    d = decide(True, False, claimed, 1000.0, 1000.0, awaits_rarp=True)
    assert d.ready and d.claim_from_flows
    # the SB row known: the flows are not what proved it
    d = decide(True, True, claimed, 1000.0, 1000.0, awaits_rarp=True)
    assert d.ready and not d.claim_from_flows
    # blocks that were there before the watch started prove nothing about this claim
    d = decide(True, False, claimed, 1000.0, 1000.0, awaits_rarp=True, blocks_new=False)
    assert not d.ready and d.waiting_for == (WAIT_CLAIM,)
    # no rarp activation expected (activation-strategy none): only the SB row counts
    assert not claim_shown_by_flows(claimed, awaits_rarp=False)
    d = decide(True, False, claimed, 1000.0, 1000.0, awaits_rarp=False)
    assert not d.ready and d.waiting_for == (WAIT_CLAIM,)


def test_the_first_port_race_shows_no_blocks() -> None:
    """The early ovn-installed: physical flows without blocks, lookup or claim."""
    raced = classify(*RACE, VM1)
    assert not claim_shown_by_flows(raced, awaits_rarp=True)
    d = decide(True, False, raced, None, 1000.0, awaits_rarp=True)
    assert not d.ready and WAIT_CLAIM in d.waiting_for
    # a half-installed block set proves nothing either
    half = replace(classify(*CLAIMED, VM1), rarp_to_controller=False)
    assert half.partially_blocked and not claim_shown_by_flows(half, awaits_rarp=True)


def test_the_initial_reply_is_remembered_line_by_line() -> None:
    """Blocks read in the monitor's initial reply were there before the watch: they show
    no claim. The copy is usable from the reply's header on (lines may still follow: a
    subset of the flows can delay a verdict, never make one)."""
    drop = Flow(0, 1000, {"in_port": "3"}, "drop")
    port = Flow(0, 100, {"in_port": "3"}, "resubmit(,8)")
    state = FlowState()
    state.mark_complete()  # the header
    state.apply(parse_update(_monitor_line(drop)) or pytest.fail(), 1.0, initial=True)
    state.apply(parse_update(_monitor_line(port)) or pytest.fail(), 2.0)  # a live update
    assert [f.actions for f in state.initial() or []] == ["drop"]
    assert len(state.flows() or []) == 2
