"""``port-ready`` on the chassis itself: this chassis' own flows for ONE port are installed.

Why not the other signals:

- the SB claim (``additional_chassis``) is written before any flow is installed;
- ``ovn-installed`` on the Interface is written by ovn-controller once ofctrl has
  confirmed (barrier) the flows of the engine run that bound the port - but with
  ``activation-strategy=rarp`` it is set while the port is still blocked, and whether it is
  set at all for an *additional* chassis depends on the OVN build (upstream: only from
  23.09, commit 842138e62; Debian's 23.03.1 does set it - a backport). So it can neither
  be required nor trusted alone;
- nor can the physical flows: a chassis that gets its first port on a logical switch
  installs them, and sets ``ovn-installed``, before the switch's logical flows have
  arrived and before its claim is committed (released OVN builds; reproduced here on
  23.03.1, see :mod:`cutover.chassis.lookup`).

The signal, all event-driven, runs where the flows are (in the chassis' agent, or in the
orchestrator when it reaches the chassis locally):

1. Armed before the NB transaction that adds the destination to requested-chassis: a local
   Open_vSwitch ``Interface`` watch for ``external_ids:ovn-installed="true"`` on the TAP,
   an SB watch for the claim, and a watch for the TAP's ofport.
2. Once the ofport, the port's tunnel key and its datapath's key are known, one OpenFlow
   flow monitor per filter (``ovs-ofctl monitor br-int watch:table=0,in_port=OFPORT``,
   ``watch:reg15=KEY``, ``watch:metadata=DP,dl_dst=MAC``) streams every change of this
   port's flows, physical or logical - no polling.
3. The monitors' reports are kept as a live copy of those flows and classified at every
   event (:mod:`cutover.chassis.port_flows`), so no ``ovs-ofctl`` round trip sits between
   the last change and the verdict; while the copy says "not ready", a background
   ``dump-flows`` checks it. The thread that brings the last input (an IDL thread or a
   monitor's reader) decides on the spot and hands the verdict on
   (:meth:`LocalPortWatch.on_verdict`). Ready needs the table-0 flow from the port's
   ofport, the output-table flow ``reg15=KEY -> output:OFPORT``, AND the port's L2 lookup
   ``metadata=DP,dl_dst=MAC -> reg15=KEY`` (the switch's logical pipeline is here). The
   rarp blocks may still be there: "installed, waiting for activation" is what a
   pre-switchover check must accept (and they are required while the SB says the port
   awaits its activation here, :func:`~cutover.chassis.port_verdict.complete`).

Which path a build takes is decided at run time (:mod:`cutover.chassis.port_verdict`),
never from the version; both need the SB claim by this chassis (the SB row, or the rarp
blocks that only a committed claim makes the controller install) and all three flows:
``ovn-installed+flows`` when ``ovn-installed`` fired too; ``flows-only`` when the flows
have been complete for ``INSTALLED_GRACE_MS`` without ``ovn-installed``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cutover.chassis.base import Vif
from cutover.chassis.flows import (
    BridgeFlows,
    PortFlows,
    PortTarget,
)
from cutover.chassis.port_flows import PortFlowSource
from cutover.chassis.port_verdict import (
    INSTALLED_GRACE_MS,
    OPEN_CHECK,
    Decision,
    complete,
    decide,
    open_decision,
)
from cutover.errors import WaitTimeout
from cutover.evidence import Evidence
from cutover.ovsdb.connection import Watch, now_ms
from cutover.ovsdb.sb import BindingState, SbClient
from cutover.ovsdb.vswitch import VswitchClient, interface_ofport

CHECK_RETRY_MS = 100.0
"""A failed ``ovs-ofctl`` dump is retried after this long (bounded by the wait's timeout)."""

CHECK = "port-ready"


class LocalPortWatch:
    """One armed port-ready wait on one chassis (see the module docstring)."""

    def __init__(self, chassis: str, sb: SbClient, vswitch: VswitchClient,
                 bridge: BridgeFlows, vif: Vif,
                 grace_ms: float = INSTALLED_GRACE_MS, use_ovn_installed: bool = True,
                 open_only: bool = False) -> None:
        """``use_ovn_installed=False`` ignores ``ovn-installed`` as a build that never sets
        it for an additional chassis would (exercises the flows-only path on any build).
        ``vif.mac`` is the MAC whose L2 lookup must be here. ``open_only``: wait instead
        until the port's rarp blocks are gone (:func:`open_decision`; the claim and
        ``ovn-installed`` were established by port-ready before)."""
        self._open_only = open_only
        lsp, tap = vif.lsp, vif.tap
        self.chassis, self.lsp, self.tap, self.mac = chassis, lsp, tap, vif.mac
        self._sb, self._vs = sb, vswitch
        self._grace_ms = grace_ms
        self._changed = threading.Event()
        self._source = PortFlowSource(bridge, tap, self._flows_changed)
        self._seen: dict[str, float] = {}
        """flag -> when the IDL thread saw it (the Watch's own time is set later, in the
        event thread, so it may still be missing when the evidence is built)."""
        self._decision: tuple[Decision, bool, bool] | None = None
        """The last verdict, with the ovn-installed and claim flags it was made with."""
        self._physical_ms: float | None = None
        """When the physical flows were first seen (for the evidence: how far the
        logical pipeline lagged behind them)."""
        self._fooled_ms: float | None = None
        """Latest start of a flow check that began after ``ovn-installed`` was seen and
        still found the port's L2 lookup missing: the early-ovn-installed race, observed."""
        self._complete_ms: float | None = None
        """When the flows became complete: ``flows_ms`` of the first complete verdict."""
        self._interrupted: BaseException | None = None
        self._step_lock = threading.Lock()
        """Held for one look at the inputs (:meth:`_step`), by the wait or an input thread."""
        self._found: Evidence | None = None
        self._complete_since: float | None = None
        self._deliver: Callable[[Evidence], None] | None = None
        self._deliver_lock = threading.Lock()
        self._delivered = False

        def describe_iface() -> str:
            return f"Interface {tap} external_ids={vswitch.interface_external_ids(tap)}"

        self._installed_ids: dict[str, str] = {}
        """The Interface's external_ids as the ``ovn-installed`` event carried them: the
        evidence reads ``ovn-installed-ts`` here, not from the IDL, whose lock the IDL
        thread holds while it processes an update (ms on a loaded node)."""

        def installed(r: Any) -> bool:
            ok = (use_ovn_installed and r.name == tap
                  and r.external_ids.get("ovn-installed") == "true")
            if ok and not self._installed_ids:
                self._installed_ids = dict(r.external_ids)
            return self._wake_if(ok, "installed")

        self._installed = vswitch.register("Interface", installed,
                                           f"ovn-installed on {tap} at {chassis}",
                                           describe_iface)  # fmt: skip
        self._ofport = vswitch.register(
            "Interface",
            lambda r: self._wake_if(r.name == tap and interface_ofport(r) is not None, "ofport"),
            f"an ofport for {tap} at {chassis}", describe_iface,
        )
        binding = sb.binding(lsp)
        self._awaits = binding is not None and binding.awaits_activation(chassis)
        """The SB says the port awaits its rarp activation here: kept by the claim watch's
        predicate (IDL thread), so the wait never takes the SB IDL's lock - the SB
        update that carries the claim holds it while it is processed."""

        def on_binding(b: BindingState) -> bool:
            awaits = b.awaits_activation(chassis)
            if awaits != self._awaits:
                self._awaits = awaits
                self._changed.set()
            return self._wake_if(b.claimed_by(chassis), "claim")

        self._claim = sb.watch_binding(lsp, on_binding, f"chassis {chassis} to claim the port")
        self._watches: list[Watch] = [self._installed, self._ofport, self._claim]
        self._start_monitor()

    def _wake_if(self, ok: bool, flag: str) -> bool:
        """Called by the watches' predicates in the IDL thread: record the fact *before*
        waking the wait (a Watch only marks itself fired later, in the event thread)."""
        if ok:
            t = now_ms()
            self._seen.setdefault(flag, t)
            self._source.note_event(t)
            self._changed.set()
            self._early()
        return ok

    def _start_monitor(self) -> bool:
        """Start the flow monitor once the TAP's ofport and the port key are known (at arm
        time normally: the TAP is plugged before the network is prepared)."""
        if self._source.started:
            return True
        row = self._vs.interface(self.tap)
        ofport = interface_ofport(row) if row is not None else None
        keys = self._binding_keys()
        if ofport is None or keys is None:
            return False
        self._source.start(PortTarget(ofport, keys[0], keys[1], self.mac))
        return True

    def _binding_keys(self) -> tuple[int, int] | None:
        """(port key, datapath key) from the SB ``Port_Binding``."""
        for row in self._sb.rows("Port_Binding"):
            if row.logical_port == self.lsp:
                return int(row.tunnel_key), int(row.datapath.tunnel_key)
        return None

    # -- Watch ---------------------------------------------------------------------------

    def interrupt(self, cause: BaseException) -> None:
        self._interrupted = cause
        self._changed.set()

    def cancel(self) -> None:
        self._release()
        self._source.stop()

    def _release(self) -> None:
        """Stop the OVSDB watches, nothing more: :meth:`cancel` (idempotent, called by the
        owner once the verdict is handed on) stops and reaps the flow monitors. Stopping
        three processes took ~4 ms here (and their exit messages wake three reader
        threads), between the verdict and its publication in the SB."""
        for w in self._watches:
            w.cancel()
        self._watches = []

    def on_verdict(self, deliver: Callable[[Evidence], None]) -> None:
        """Have ``deliver`` called once with the verdict, by whichever thread makes it:
        the OVSDB IDL thread or flow-monitor reader that brought the last input decides
        from the monitors' live copy on the spot (:meth:`_early`), saving the wake of the
        thread blocked in :meth:`wait` (0.2-4 ms on 2 loaded cores, measured); the wait
        returns the same evidence. ``deliver`` must not block (it runs in an IDL thread:
        no OVSDB transaction, no IDL read) and runs at most once."""
        self._deliver = deliver
        self._changed.set()  # an input that came before this hook: the wait looks again

    def wait(self, timeout_s: float) -> Evidence:
        assert self._watches, "the watch was cancelled"
        deadline = now_ms() + timeout_s * 1000.0
        try:
            while True:
                self._changed.clear()
                if self._interrupted is not None:
                    raise self._interrupted
                with self._step_lock:
                    found, d, t = self._step(live_only=False)
                if found is not None:
                    self._hand_on(found)
                    return found
                assert d is not None
                if t >= deadline:
                    raise WaitTimeout(f"the flows of {self.lsp} on {self.chassis}", timeout_s,
                                      self.describe())
                recheck = d.recheck_at_ms
                due = self._source.recheck_due()
                if due is not None:
                    recheck = min(recheck, due) if recheck is not None else due
                if self._source.failing:
                    # a dump failed, or nothing would wake us on a flow change: retry
                    recheck = t + CHECK_RETRY_MS
                until = min(deadline, recheck or deadline)
                self._changed.wait(max(0.0, (until - t) / 1000.0))
        except BaseException:
            self._release()
            raise
        # a verdict: the OVSDB watches are released by cancel(), which every owner calls
        # after handing the verdict on - unregistering waits for the IDL thread's lock

    def _step(self, live_only: bool) -> tuple[Evidence | None, Decision | None, float]:
        """One look at every input (under ``_step_lock``): (the verdict or None, the
        decision, its time). ``live_only`` (an input thread): the monitors' live copy
        only - no dump, no IDL read, no waiting - and None unless it says complete."""
        if self._found is not None:
            return self._found, None, now_ms()
        awaits = self._awaits
        if live_only:
            flows = self._source.live()
            if flows is None or (not complete(flows, awaits) and not self._open_only):
                return None, None, now_ms()
        else:
            flows = self._source.check(awaits) if self._start_monitor() else None
        installed, claimed = "installed" in self._seen, "claim" in self._seen
        t = now_ms()  # after every input was read: the verdict's time
        if complete(flows, awaits):
            if self._complete_since is None:
                self._complete_since, self._complete_ms = t, self._source.flows_ms
        else:
            self._complete_since = self._complete_ms = None
        if flows is not None and flows.physical and self._physical_ms is None:
            self._physical_ms = t
        installed_ms = self._seen.get("installed")
        checked_ms = self._source.dump_started_ms
        if (flows is not None and flows.physical and not flows.lookup.present
                and installed_ms is not None and checked_ms is not None
                and checked_ms > installed_ms):
            self._fooled_ms = checked_ms
        d = (open_decision(flows) if self._open_only else
             decide(installed, claimed, flows, self._complete_since, t, self._grace_ms, awaits,
                    self._source.blocks_new))
        if live_only and d.ready and not self._open_only and not self._installed_ids:
            return None, d, t  # the evidence would read the IDL: left to the wait
        self._decision = (d, installed, claimed)
        if d.ready and self._open_only:
            assert flows is not None
            self._found = Evidence(OPEN_CHECK, t, f"no rarp block left for {self.lsp} on "
                                   f"{self.chassis}: {flows}; {self._source.checks} flow "
                                   "checks")
        elif d.ready:
            assert d.path is not None and flows is not None
            self._found = self._evidence(d, flows, t, self._complete_since)
        return self._found, d, t

    def _early(self) -> None:
        """In an input's thread (IDL or flow-monitor reader), after it woke the wait: decide
        here if the verdict can be made from the live copy (see :meth:`on_verdict`). Never
        waits for the step lock: the thread in :meth:`wait` may hold it while it reads the
        IDL whose lock this thread holds - it looks again anyway, its event is set."""
        if self._deliver is None or self._found is not None or not self._watches:
            return
        if not self._step_lock.acquire(blocking=False):
            return
        try:
            found, _, _ = self._step(live_only=True)
        except Exception:  # never in an IDL thread: the wait looks again and reports it
            return
        finally:
            self._step_lock.release()
        if found is not None:
            self._hand_on(found)

    def _hand_on(self, found: Evidence) -> None:
        """Deliver the verdict once, whichever thread made it."""
        deliver = self._deliver
        with self._deliver_lock:
            if self._delivered or deliver is None:
                return
            self._delivered = True
        deliver(found)

    def _flows_changed(self) -> None:
        """The flow source saw a change (a monitor's reader or a dump's thread)."""
        self._changed.set()
        self._early()

    def _evidence(self, d: Decision, flows: PortFlows, seen: float,
                  complete_ms: float | None) -> Evidence:
        assert d.path is not None
        ids = self._installed_ids or self._vs.interface_external_ids(self.tap) or {}
        ts = ids.get("ovn-installed-ts")
        installed_ts = float(ts) if ts and ts.isdigit() else None
        claim = ("claim: shown by the rarp blocks (installed only for a committed claim), "
                 "before the SB row reached this agent" if d.claim_from_flows
                 else f"claim: SB row ({self._why_not_from_blocks()})")  # fmt: skip
        detail = (
            f"{d.path} on {self.chassis}: {flows}; {claim}; ovn-installed="
            f"{ids.get('ovn-installed', '-')} ovn-installed-ts={ts or '-'}; "
            f"{self._source.live_checks} checks of the monitors' live copy, "
            f"{self._source.checks} flow dumps"
        )
        if self._source.copy_missed:
            detail += (f"; the live copy missed {self._source.copy_missed} update(s) a "
                       "background dump found")  # fmt: skip
        if (self._physical_ms is not None and complete_ms is not None
                and complete_ms > self._physical_ms):
            detail += (f"; the L2 lookup was seen {complete_ms - self._physical_ms:.1f} ms "
                       "after the physical flows")  # fmt: skip
        marks: list[tuple[str, float, str]] = []
        for name, flag, w in (("claim", "claim", self._claim),
                              ("ovn-installed", "installed", self._installed)):  # fmt: skip
            if flag in self._seen:
                marks.append((f"{CHECK}.{name}", self._seen[flag], w.what))
        if self._complete_ms is not None:
            marks.append((f"{CHECK}.flows", self._complete_ms,
                          "the port's flows complete on br-int (flow monitor)"))
        installed_ms = self._seen.get("installed")
        if installed_ms is not None and self._fooled_ms is not None:
            # what a check trusting ovn-installed and the physical flows would have taken
            detail += ("; EARLY ovn-installed: a flow check started "
                       f"{self._fooled_ms - installed_ms:.1f} ms after it still found no L2 "
                       "lookup")  # fmt: skip
        if installed_ts is not None and installed_ms is not None:
            detail += (f"; ovn-installed event seen {installed_ms - installed_ts:.1f} ms "
                       "after ovn-installed-ts")  # fmt: skip
        return Evidence(CHECK, seen, detail, committed_ms=installed_ts, marks=tuple(marks))

    def _why_not_from_blocks(self) -> str:
        """Why the rarp blocks did not show the claim first (for the evidence)."""
        if not self._awaits:
            return "the SB did not say the port awaits its rarp activation here"
        if not self._source.blocks_new:
            return "rarp blocks on br-int already when the monitors started"
        if self._complete_ms is None or "claim" not in self._seen:
            return "no complete flows before it"
        return (f"the blocks completed {self._complete_ms - self._seen['claim']:+.1f} ms "
                "after it")

    def describe(self) -> str:
        ids = self._vs.interface_external_ids(self.tap)
        last = self._source.last
        flows = str(last) if last else "no flow check (port not claimed yet)"
        if self._decision is not None and self._decision[0].waiting_for:
            d, installed, claimed = self._decision
            flows = (f"last verdict with ovn-installed {'seen' if installed else 'not seen'} "
                     f"and the claim {'seen' if claimed else 'not seen'}: waiting for "
                     f"{', '.join(d.waiting_for)}; {flows}")  # fmt: skip
        if self._fooled_ms is not None:
            flows += "; EARLY ovn-installed observed (a flow check after it found no L2 lookup)"
        return (f"Interface {self.tap} external_ids={ids}; {flows}; "
                f"{self._sb.describe_binding(self.lsp)}{self._source.problems()}")  # fmt: skip
