"""The destination's own OpenFlow flows for one VIF: dump, parse, classify, watch.

ovn-controller programs two *physical* flows per bound VIF on ``br-int``, whatever the
OVN version numbers its tables:

- ingress, table 0: ``in_port=<ofport>`` -> load the logical datapath/inport, resubmit;
- egress, the "logical to physical" output table: ``reg15=<port key>,metadata=<dp key>``
  -> ``output:<ofport>`` (table 65 on OVN 23.03; the number differs on 24.x/25.x, so the
  table is *found* as the one holding the ``output:<ofport>`` flow, never hard-coded).

With ``activation-strategy=rarp`` on an additional chassis it adds, until the RARP
arrives, a higher-priority drop with the same match in both places and a priority-1010
``rarp,in_port=<ofport>`` flow sending RARPs to the controller (physical.c,
``setup_rarp_activation_strategy``). :func:`classify` turns the flows into a
:class:`PortFlows` verdict: both physical flows present = installed; the drops present =
installed but blocked waiting for activation (which still counts as ready: the unblock is
the RARP's job and happens at switchover).

``ovs-ofctl`` finds ``br-int.mgmt`` through ``OVS_RUNDIR``; ``--no-names`` keeps port
numbers numeric (names would appear on a tty) and ``--no-stats`` keeps lines parseable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cutover.errors import CutoverError

OFCTL_TIMEOUT_S = 5.0
RARP_PRIORITY = 1010
"""ovn-controller's RARP-to-controller flow on an additional chassis awaiting activation."""


class FlowCheckError(CutoverError):
    """ovs-ofctl could not be run or answered with an error."""


@dataclass(frozen=True)
class Flow:
    table: int
    priority: int
    match: dict[str, str]
    """``field -> value``; bare keywords (``ip``, ``rarp``) map to ``""``."""
    actions: str

    @property
    def is_drop(self) -> bool:
        return self.actions in ("", "drop")

    def outputs_to(self, ofport: int) -> bool:
        return re.search(rf"(?:^|,)output:{ofport}(?:,|$)", self.actions) is not None


_STAT_KEYS = frozenset({
    "cookie", "duration", "n_packets", "n_bytes", "idle_age", "hard_age", "idle_timeout",
    "hard_timeout", "importance", "reset_counts", "send_flow_rem", "no_packet_counts",
    "no_byte_counts",
})
"""Per-flow metadata ``dump-flows`` prints before the match (with or without --no-stats)."""


def parse_flow(line: str) -> Flow | None:
    """One line of ``ovs-ofctl --no-stats --no-names dump-flows`` (None: not a flow)."""
    text = line.strip()
    if not text.startswith("cookie=") and "actions=" not in text:
        return None
    left, sep, actions = text.partition(" actions=")
    if not sep:
        return None
    table, priority = 0, 32768
    match: dict[str, str] = {}
    for token in left.split(", "):
        key, _, value = token.partition("=")
        if key in _STAT_KEYS:
            continue
        if key == "table" and "," not in token:
            table = int(value)
            continue
        for field in token.split(","):
            fkey, _, fvalue = field.partition("=")
            if fkey == "priority":
                priority = int(fvalue)
            elif fkey:
                match[fkey] = fvalue
    return Flow(table, priority, match, actions.strip())


def parse_flows(text: str) -> list[Flow]:
    return [f for f in (parse_flow(line) for line in text.splitlines()) if f is not None]


def match_number(value: str | None) -> int | None:
    """An exact numeric match field (``reg15=0x2``, ``metadata=3``); None if absent or
    masked (a masked match is not about one port)."""
    if value is None or "/" in value:
        return None
    try:
        return int(value, 0)
    except ValueError:
        return None


@dataclass(frozen=True)
class PortFlows:
    """Which of the VIF's physical flows are on the bridge."""

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

    @property
    def installed(self) -> bool:
        return self.ingress and self.egress

    @property
    def blocked(self) -> bool:
        return self.ingress_blocked or self.egress_blocked

    @property
    def state(self) -> str:
        if not self.installed:
            return "not-installed"
        return "blocked-awaiting-activation" if self.blocked else "open"

    def __str__(self) -> str:
        return (
            f"flows for ofport {self.ofport}/key {self.port_key}: {self.state} "
            f"(ingress={self.ingress} egress={self.egress} table={self.egress_table} "
            f"in-drop={self.ingress_blocked} out-drop={self.egress_blocked} "
            f"rarp->controller={self.rarp_to_controller}; {self.n_in_port} in_port flows in "
            f"table 0, {self.n_reg15} reg15 flows)"
        )


def classify(in_port_flows: Sequence[Flow], reg15_flows: Sequence[Flow], ofport: int,
             port_key: int) -> PortFlows:
    """Judge the VIF's flows from the two filtered dumps (``table=0,in_port=ofport`` and
    ``reg15=port_key``); flows of other ports that slipped in are ignored."""
    ins = [f for f in in_port_flows
           if f.table == 0 and match_number(f.match.get("in_port")) == ofport]
    regs = [f for f in reg15_flows if match_number(f.match.get("reg15")) == port_key]
    plain_in = [f for f in ins if not f.is_drop and "rarp" not in f.match
                and f.priority < RARP_PRIORITY]
    out = [f for f in regs if f.outputs_to(ofport)]
    out_flow = min(out, key=lambda f: f.priority) if out else None
    in_prio = min((f.priority for f in plain_in), default=None)
    ingress_blocked = in_prio is not None and any(
        f.is_drop and f.priority > in_prio and set(f.match) == {"in_port"} for f in ins
    )
    egress_blocked = out_flow is not None and any(
        f.is_drop and f.table == out_flow.table and f.priority > out_flow.priority
        and f.match == out_flow.match for f in regs
    )
    rarp = any("rarp" in f.match and "controller(" in f.actions for f in ins)
    return PortFlows(
        ofport=ofport, port_key=port_key, ingress=bool(plain_in), egress=out_flow is not None,
        egress_table=out_flow.table if out_flow else None, ingress_blocked=ingress_blocked,
        egress_blocked=egress_blocked, rarp_to_controller=rarp, n_in_port=len(ins),
        n_reg15=len(regs),
    )


def _ofctl() -> str:
    return shutil.which("ovs-ofctl") or "ovs-ofctl"


def _env(rundir: str) -> dict[str, str]:
    return dict(os.environ, OVS_RUNDIR=rundir)


class BridgeFlows:
    """``ovs-ofctl`` against one chassis' integration bridge."""

    def __init__(self, rundir: str, bridge: str = "br-int") -> None:
        self.rundir = rundir
        self.bridge = bridge

    def dump(self, match: str) -> list[Flow]:
        return self.dump_many([match])[0]

    def dump_many(self, matches: Sequence[str]) -> list[list[Flow]]:
        """One filtered ``dump-flows`` per match, run concurrently: each ``ovs-ofctl`` is a
        process start (~5 ms here), and the detection latency pays for them in series
        otherwise."""
        argvs = [[_ofctl(), "--no-names", "--no-stats", "dump-flows", self.bridge, m]
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

    def port_flows(self, ofport: int, port_key: int) -> PortFlows:
        ingress, egress = self.dump_many([f"table=0,in_port={ofport}", f"reg15={port_key}"])
        return classify(ingress, egress, ofport, port_key)

    def monitor(self, ofport: int, port_key: int, on_change: Callable[[], None]) -> FlowMonitor:
        return FlowMonitor(self, [f"table=0,in_port={ofport}", f"reg15={port_key}"], on_change)


class FlowMonitor:
    """``ovs-ofctl monitor BR watch:...``: an OpenFlow flow monitor used as a wake-up.

    Every flow added/modified/deleted that matches one of ``specs`` calls ``on_change``
    (the dump stays the source of truth: the monitor prints no priorities on OVS 3.1, so
    it cannot tell the classification flow from the drop with the same match). ``ready``
    is set once the switch has answered every monitor request (the initial replies), so a
    check made after it cannot miss a later change.
    """

    def __init__(self, bridge: BridgeFlows, specs: Sequence[str],
                 on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._expected = len(specs)
        self.ready = threading.Event()
        self.error: str | None = None
        argv = [_ofctl(), "--no-names", "monitor", bridge.bridge,
                *(f"watch:{s}" for s in specs)]
        try:
            self._proc = subprocess.Popen(
                argv, env=_env(bridge.rundir), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, bufsize=1,
            )
        except OSError as e:
            raise FlowCheckError(f"{' '.join(argv)}: {e}") from e
        self._thread = threading.Thread(target=self._read, name="flow-monitor", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        replies = 0
        for line in self._proc.stdout:
            if "FLOW_MONITOR reply" in line and "xid=0x0)" not in line:
                replies += 1
                if replies >= self._expected:
                    self.ready.set()
            elif "event=" in line:
                self._on_change()
            elif line.strip() and not self.ready.is_set():
                self.error = line.strip()
        if not self.ready.is_set() and self.error is None:
            self.error = "ovs-ofctl monitor exited"
        self.ready.set()
        self._on_change()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None and self.error is None

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
