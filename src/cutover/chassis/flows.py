"""The destination's own OpenFlow flows for one VIF: dump, classify, watch.

ovn-controller programs two *physical* flows per bound VIF on ``br-int``, whatever the
OVN version numbers its tables:

- ingress, table 0: ``in_port=<ofport>`` -> load the logical datapath/inport, resubmit;
- egress, the "logical to physical" output table: ``reg15=<port key>,metadata=<dp key>``
  -> ``output:<ofport>`` (table 65 on Debian's 23.03.1, 25.03.0 and 26.03.1 alike, as
  measured; OVN may renumber its tables in any release, so the table is *found* as the one
  holding the ``output:<ofport>`` flow, never hard-coded).

With ``activation-strategy=rarp`` on an additional chassis it adds, until the RARP
arrives, a higher-priority drop with the same match in both places and a priority-1010
``rarp,in_port=<ofport>`` flow sending RARPs to the controller (physical.c,
``setup_rarp_activation_strategy``).

Physical flows come from the ``Port_Binding`` alone; a chassis that gets its first port on
a switch can install them (and set ``ovn-installed``) before the switch's *logical* flows
have arrived (:mod:`cutover.chassis.lookup`). So :func:`classify` also looks for the
port's L2 lookup flow and turns the three filtered dumps into a :class:`PortFlows`
verdict: both physical flows AND the lookup present = installed; the drops present =
installed but blocked waiting for activation (which still counts as ready: the unblock is
the RARP's job and happens at switchover).

``ovs-ofctl`` finds ``br-int.mgmt`` through ``OVS_RUNDIR``; ``--no-names`` keeps port
numbers numeric (names would appear on a tty) and ``--no-stats`` keeps lines parseable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cutover import children
from cutover.chassis.flowstate import UNKNOWN_PRIORITY, FlowState, merged, parse_update
from cutover.chassis.lookup import L2Lookup, classify_lookup, lookup_match
from cutover.chassis.ofparse import Flow, match_number, parse_flow, parse_flows
from cutover.errors import CutoverError

__all__ = [
    "BridgeFlows", "Flow", "FlowCheckError", "FlowMonitor", "PortFlows", "PortTarget",
    "classify", "match_number", "parse_flow", "parse_flows",
]

OFCTL_TIMEOUT_S = 5.0
RARP_PRIORITY = 1010
"""ovn-controller's RARP-to-controller flow on an additional chassis awaiting activation."""


class FlowCheckError(CutoverError):
    """ovs-ofctl could not be run or answered with an error."""


@dataclass(frozen=True)
class PortTarget:
    """What identifies one VIF's flows on a bridge."""

    ofport: int
    port_key: int
    """``Port_Binding.tunnel_key`` (reg15/reg14 in the pipeline)."""
    datapath_key: int
    """The logical switch's ``Datapath_Binding.tunnel_key`` (``metadata``)."""
    mac: str

    @property
    def filters(self) -> tuple[str, str, str]:
        """The three ``dump-flows`` filters / ``monitor`` watch specs: ingress, egress, and
        the port's L2 lookup."""
        return (f"table=0,in_port={self.ofport}", f"reg15={self.port_key}",
                lookup_match(self.datapath_key, self.mac))  # fmt: skip


@dataclass(frozen=True)
class PortFlows:
    """Which of the VIF's flows are on the bridge: physical and logical."""

    ofport: int
    port_key: int
    ingress: bool
    """table 0 ``in_port=ofport`` classification flow (not a drop)."""
    egress: bool
    """``reg15=key`` flow with ``output:ofport``."""
    egress_table: int | None
    ingress_blocked: bool
    egress_blocked: bool
    rarp_to_controller: bool
    n_in_port: int
    n_reg15: int
    lookup: L2Lookup
    """The port's L2 lookup flow: the switch's logical pipeline reached this chassis."""

    @property
    def physical(self) -> bool:
        return self.ingress and self.egress

    @property
    def installed(self) -> bool:
        """Physical flows AND the port's logical pipeline, and the rarp blocks all there or
        all gone (see :attr:`partially_blocked`)."""
        return self.physical and self.lookup.present and not self.partially_blocked

    @property
    def blocked(self) -> bool:
        return self.ingress_blocked or self.egress_blocked

    @property
    def partially_blocked(self) -> bool:
        """Some of the rarp activation flows but not all three (ingress drop, egress drop,
        RARP-to-controller): ovn-controller adds them together (physical.c), so this is a
        half-installed state. OVN 25.03 was seen setting ``ovn-installed`` with only the
        egress drop in place; a switchover then could lose the RARP that lifts the block
        (no flow would send it to the controller), so it is not ready."""
        return self.blocked and not (
            self.ingress_blocked and self.egress_blocked and self.rarp_to_controller)

    @property
    def state(self) -> str:
        if self.physical and self.partially_blocked:
            return "partially-blocked"
        if not self.physical:
            return "not-installed"
        if not self.lookup.present:
            return "physical-only (no logical pipeline for the port yet)"
        return "blocked-awaiting-activation" if self.blocked else "open"

    def __str__(self) -> str:
        return (
            f"flows for ofport {self.ofport}/key {self.port_key}: {self.state} "
            f"(ingress={self.ingress} egress={self.egress} table={self.egress_table} "
            f"in-drop={self.ingress_blocked} out-drop={self.egress_blocked} "
            f"rarp->controller={self.rarp_to_controller}; {self.n_in_port} in_port flows in "
            f"table 0, {self.n_reg15} reg15 flows; {self.lookup})"
        )


def classify(in_port_flows: Sequence[Flow], reg15_flows: Sequence[Flow],
             lookup_flows: Sequence[Flow], target: PortTarget) -> PortFlows:
    """Judge the VIF's flows from the three filtered dumps (:attr:`PortTarget.filters`);
    flows of other ports, datapaths or MACs that slipped in are ignored."""
    ofport, port_key = target.ofport, target.port_key
    ins = [f for f in in_port_flows
           if f.table == 0 and match_number(f.match.get("in_port")) == ofport]
    regs = [f for f in reg15_flows if match_number(f.match.get("reg15")) == port_key]
    plain_in = [f for f in ins if not f.is_drop and "rarp" not in f.match
                and (f.priority < RARP_PRIORITY or f.priority == UNKNOWN_PRIORITY)]
    out = [f for f in regs if f.outputs_to(ofport)]
    out_flow = min(out, key=lambda f: f.priority) if out else None
    in_flow = min(plain_in, key=lambda f: f.priority) if plain_in else None
    ingress_blocked = in_flow is not None and any(
        f.is_drop and _above(f, in_flow) and set(f.match) == {"in_port"} for f in ins
    )
    egress_blocked = out_flow is not None and any(
        f.is_drop and f.table == out_flow.table and _above(f, out_flow)
        and f.match == out_flow.match for f in regs
    )
    rarp = any("rarp" in f.match and "controller(" in f.actions for f in ins)
    return PortFlows(
        ofport=ofport, port_key=port_key, ingress=bool(plain_in), egress=out_flow is not None,
        egress_table=out_flow.table if out_flow else None, ingress_blocked=ingress_blocked,
        egress_blocked=egress_blocked, rarp_to_controller=rarp, n_in_port=len(ins),
        n_reg15=len(regs),
        lookup=classify_lookup(lookup_flows, target.datapath_key, target.mac, port_key),
    )


def _above(flow: Flow, other: Flow) -> bool:
    """``flow`` takes precedence over ``other``. Flows known from a monitor update have no
    priority (:mod:`cutover.chassis.flowstate`): a drop with the very match of the port's
    flow then counts as above it - it must differ in priority to coexist, and the only
    such drop ovn-controller installs is the rarp block (physical.c), never a fallback
    below the port's flow."""
    if UNKNOWN_PRIORITY in (flow.priority, other.priority):
        return True
    return flow.priority > other.priority


def _ofctl(command: Sequence[str]) -> list[str]:
    """The argv prefix of ``ovs-ofctl``: a bare name is looked up on PATH, a longer command
    (e.g. a newer OVS started through its root's loader) is used as it is."""
    if len(command) == 1 and "/" not in command[0]:
        return [shutil.which(command[0]) or command[0]]
    return list(command)


def _env(rundir: str) -> dict[str, str]:
    return dict(os.environ, OVS_RUNDIR=rundir)


class BridgeFlows:
    """``ovs-ofctl`` against one chassis' integration bridge."""

    def __init__(self, rundir: str, bridge: str = "br-int",
                 ofctl: Sequence[str] = ("ovs-ofctl",)) -> None:
        """``ofctl``: the chassis' ``ovs-ofctl`` command (``ChassisEndpoint.ofctl``)."""
        self.rundir = rundir
        self.bridge = bridge
        self.ofctl = _ofctl(ofctl)

    def dump(self, match: str) -> list[Flow]:
        return self.dump_many([match])[0]

    def dump_many(self, matches: Sequence[str]) -> list[list[Flow]]:
        """One filtered ``dump-flows`` per match, run concurrently: each ``ovs-ofctl`` is a
        process start (~5 ms here), and the detection latency pays for them in series
        otherwise."""
        argvs = [[*self.ofctl, "--no-names", "--no-stats", "dump-flows", self.bridge, m]
                 for m in matches]
        procs: list[tuple[list[str], subprocess.Popen[str]]] = []
        try:
            for argv in argvs:
                procs.append((argv, subprocess.Popen(
                    argv, env=_env(self.rundir), stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)))
            results: list[list[Flow]] = []
            for argv, proc in procs:
                try:
                    out, err = proc.communicate(timeout=OFCTL_TIMEOUT_S)
                except subprocess.TimeoutExpired as e:
                    raise FlowCheckError(
                        f"{' '.join(argv)} (OVS_RUNDIR={self.rundir}): {e}") from e
                if proc.returncode != 0:
                    raise FlowCheckError(
                        f"{' '.join(argv)} (OVS_RUNDIR={self.rundir}) failed: {err.strip()}"
                    )
                results.append(parse_flows(out))
            return results
        except OSError as e:
            raise FlowCheckError(f"ovs-ofctl dump-flows (OVS_RUNDIR={self.rundir}): {e}") from e
        finally:
            for _, proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def port_flows(self, target: PortTarget) -> PortFlows:
        ingress, egress, lookup = self.dump_many(target.filters)
        return classify(ingress, egress, lookup, target)

    def monitor(self, target: PortTarget, on_change: Callable[[], None],
                live: bool = False) -> FlowMonitor:
        """A flow monitor on all three of the port's filters: a change of its logical
        lookup wakes the wait as a change of its physical flows does. ``live``: also keep
        the flows it reports (:meth:`FlowMonitor.flows`)."""
        return FlowMonitor(self, target.filters, on_change, live=live)


class FlowMonitor:
    """``ovs-ofctl monitor BR watch:SPEC``: OpenFlow flow monitors used as a wake-up, and
    with ``live=True`` as a live copy of the watched flows.

    Every flow added/modified/deleted that matches one of ``specs`` calls ``on_change``.
    ``ready`` is set once the switch has answered every monitor request (the initial
    replies), so a check made after it cannot miss a later change. One ``ovs-ofctl``
    process per spec: with two ``watch:`` arguments ovs-ofctl sends the second request
    only after the first one's reply and, while it waits for the second reply, DROPS
    every update of the first watch (``vconn_recv_xid`` discards other xids) - seen here
    as a port's output flow that never reached its monitor. With ``live``,
    :meth:`flows` returns what the monitors reported (see
    :mod:`cutover.chassis.flowstate` for what that copy can and cannot tell).
    """

    def __init__(self, bridge: BridgeFlows, specs: Sequence[str],
                 on_change: Callable[[], None], live: bool = False) -> None:
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._pending = 0
        self._procs: list[_MonitorProcess] = []
        chunks = [[spec] for spec in specs]
        self._pending = len(chunks)
        if not chunks:
            self.ready.set()
        try:
            for chunk in chunks:
                self._procs.append(_MonitorProcess(bridge, chunk, on_change, self._one_ready,
                                                   FlowState() if live else None))
        except FlowCheckError:
            self.stop()
            raise

    def _one_ready(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending <= 0:
                self.ready.set()

    @property
    def error(self) -> str | None:
        return next((p.error for p in self._procs if p.error is not None), None)

    @property
    def alive(self) -> bool:
        return all(p.alive for p in self._procs)

    def initial_flows(self) -> list[Flow] | None:
        """The watched flows the monitors' initial replies listed (already on the bridge
        when they started; None: not ``live`` or not started yet)."""
        states = [p.state for p in self._procs if p.state is not None]
        if not self._procs or len(states) < len(self._procs):
            return None
        return merged(states, initial=True)

    def n_initial(self) -> int:
        """Lines of the initial replies applied so far (changes while they are read)."""
        return sum(p.state.n_initial for p in self._procs if p.state is not None)

    def flows(self) -> list[Flow] | None:
        """The watched flows as the monitors reported them (priorities unknown), or None
        when that copy is not usable: not ``live``, initial replies incomplete, a monitor
        down or its copy lost (then dump)."""
        states = [p.state for p in self._procs if p.state is not None and p.alive]
        if not self._procs or len(states) < len(self._procs):
            return None
        return merged(states)

    @property
    def changed_ms(self) -> float | None:
        """When a monitor last reported a change of the watched flows (wall ms)."""
        times = [p.state.changed_ms for p in self._procs
                 if p.state is not None and p.state.changed_ms is not None]  # fmt: skip
        return max(times, default=None)

    @property
    def lost(self) -> str | None:
        """Why the live copy was given up, if it was."""
        return next((p.state.lost for p in self._procs
                     if p.state is not None and p.state.lost is not None), None)  # fmt: skip

    def stop(self) -> None:
        for p in self._procs:  # all signalled first: they exit in parallel
            p.terminate()
        for p in self._procs:
            p.stop()


class _MonitorProcess:
    """One ``ovs-ofctl monitor`` process (see :class:`FlowMonitor`)."""

    def __init__(self, bridge: BridgeFlows, specs: Sequence[str],
                 on_change: Callable[[], None], on_ready: Callable[[], None],
                 state: FlowState | None = None) -> None:
        self._on_change = on_change
        self._on_ready = on_ready
        self._expected = len(specs)
        self._ready = False
        self.state = state
        self.error: str | None = None
        argv = [*bridge.ofctl, "--no-names", "monitor", bridge.bridge,
                *(f"watch:{s}" for s in specs)]
        try:
            self._proc = children.popen(  # dies with us: never an orphaned monitor
                argv, env=_env(bridge.rundir), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, bufsize=0,
            )
        except OSError as e:
            raise FlowCheckError(f"{' '.join(argv)}: {e}") from e
        self._thread = threading.Thread(target=self._read, name="flow-monitor", daemon=True)
        self._thread.start()

    def _set_ready(self) -> None:
        if not self._ready:
            self._ready = True
            self._on_ready()

    def _read(self) -> None:
        """Read the monitor's output as it comes, a pipe read at a time: every line of one
        read is applied before ``on_change`` is called once for them - a flow table change
        of ovn-controller (one bundle) arrives as a burst of lines, and a wait that judged
        the port after each of them would slow the reading of the rest (measured: the
        port's last flow read 2.4 ms later with a verdict per line)."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        replies = 0
        initial = False
        """Reading the lines of an initial reply (they follow its header line)."""
        pending = b""
        answered = False
        """Every initial reply's header was read (its flows follow it)."""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            changed = False
            for raw in lines:
                line = raw.decode(errors="replace")
                if "FLOW_MONITOR reply" in line:
                    initial = "xid=0x0)" not in line
                    if initial and "flags=[more]" not in line:  # else: more parts to come
                        replies += 1
                        answered = replies >= self._expected
                elif "event=" in line:
                    if self.state is not None:
                        update = parse_update(line)
                        if update is not None:
                            self.state.apply(update, time.time() * 1000.0, initial=initial)
                    changed = True
                elif "FLOW_MONITOR_PAUSED" in line:
                    if self.state is not None:
                        self.state.lose("the switch paused the flow monitor (updates dropped)")
                    changed = True
                elif line.strip() and not self._ready and not answered:
                    self.error = line.strip()
            if answered and not self._ready and not pending:
                # the copy is usable once the flows that follow the last reply's header
                # are applied too, i.e. at a read that ends on a line's end (ovs-ofctl
                # flushes each reply; a long one comes in stdio-buffer pieces that end
                # mid-line); judged at the header, a copy lacking the port's rarp blocks
                # would say "open" (pre-activation's verdict is an absence)
                if self.state is not None:
                    self.state.mark_complete()
                self._set_ready()
            if changed:
                self._on_change()
        if not self._ready and self.error is None:
            self.error = "ovs-ofctl monitor exited"
        if self.state is not None:
            self.state.lose("ovs-ofctl monitor exited")
        self._set_ready()
        self._on_change()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None and self.error is None

    def terminate(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._thread.join(timeout=2)
            self._proc.stdout.close()
