"""`Hypervisor` implemented with real QEMU (TCG) over QMP, one QEMU per (VM, chassis).

How the migration steps map onto QEMU's live migration (and why):

- ``prepare_destination``: QEMU with ``-incoming defer`` in the destination namespace,
  attached to the TAP; ``migrate-incoming`` on a unix socket in the lab's guest dir.
  If no TAP exists yet (the ``legacy`` strategy plugs only at the switchover) QEMU
  creates it, as libvirt does for a managed TAP, and we bring it up; the OVS port still
  appears only when the plugger adds it.
- ``copy_memory``: ``migrate`` with the capability ``pause-before-switchover``: real
  pre-copy (the ``duration_ms`` of the emulator is ignored; its length is the RAM size
  over ``--max-bandwidth``); returns when the source reports ``pre-switchover``.
- ``pause_source``: nothing to do: in ``pre-switchover`` the source vCPUs are ALREADY
  stopped (QEMU stops them before it announces the state), so this returns the
  timestamp of the source's STOP event. That is why readiness is waited for before
  ``copy_memory`` and never while holding ``pre-switchover``: every millisecond held
  there is blackout.
- ``switchover``: ``migrate-continue``; returns the timestamp of the destination's
  RESUME event (QEMU then sends its own RARP announcements).
- ``abort``: ``migrate_cancel`` (from ``pre-switchover`` QEMU resumes the source by
  itself), the destination QEMU is stopped, the source resumed if still paused and told
  to ``announce-self``.

Stateless across CLI calls (files in ``site.guest_dir``, see
:mod:`cutover.guest.qemu_proc`); within one process the QMP connections are kept so
the STOP/RESUME/MIGRATION events with QEMU's own timestamps are not missed.
:meth:`last_migration` gives the figures of the last switchover for the run record.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cutover.errors import GuestError, InvalidMigration, WaitTimeout
from cutover.guest import qemu_proc
from cutover.guest.base import GuestState
from cutover.guest.image import ensure_image
from cutover.guest.qemu_hold import HoldPlan
from cutover.guest.qemu_proc import QemuFiles
from cutover.guest.qmp import Monitor, event_ms, is_event, is_migration, migration_figures
from cutover.site import ChassisEndpoint, Site, VmSpec

ACTIVE = {"setup", "active", "pre-switchover", "device", "wait-unplug", "cancelling",
          "postcopy-active"}
"""``query-migrate`` states in which a cancel is needed (QAPI MigrationStatus)."""
ENDED = {"completed", "failed", "cancelled"}
DOWNTIME_LIMIT_MS = 300
"""QEMU's default ``downtime-limit``: the stop-and-copy it aims at when converging."""
DEFAULT_BANDWIDTH_MIB = 128.0
"""QEMU 7.2's default ``max-bandwidth`` (MAX_THROTTLE, 128 MiB/s)."""


class QemuHypervisor:
    """Real QEMU guests of a lab; implements ``Hypervisor`` (and ``last_migration``)."""

    def __init__(
        self,
        site: Site,
        ram_mb: int = 128,
        max_bandwidth_mib: float | None = None,
        boot_timeout_s: float = 90.0,
        migrate_timeout_s: float = 120.0,
        downtime_limit_ms: int = DOWNTIME_LIMIT_MS,
        progress: Callable[[str], None] = lambda _m: None,
    ) -> None:
        if not site.guest_dir:
            raise GuestError(f"site {site.name!r} has no guest_dir for QEMU sockets")
        qemu_proc.check_lab_record(site.extra.get("qemu"))
        self.site = site
        self.ram_mb = ram_mb
        self.max_bandwidth_mib = max_bandwidth_mib
        self.boot_timeout_s = boot_timeout_s
        self.migrate_timeout_s = migrate_timeout_s
        self.downtime_limit_ms = downtime_limit_ms
        self.progress = progress
        self._loop = asyncio.new_event_loop()
        self._mons: dict[tuple[str, str], Monitor] = {}
        self._runs: dict[str, dict[str, Any]] = {}
        self._figures: dict[str, dict[str, Any]] = {}
        self._stop_hooks: dict[str, list[Callable[[float], None]]] = {}
        """:meth:`on_source_stopped` callbacks waiting for :meth:`switchover`."""

    # --- Hypervisor ----------------------------------------------------------------

    def ensure_running(self, vm: VmSpec) -> None:
        mon = self._maybe_monitor(vm, vm.chassis)
        if mon is None:
            self._boot(vm, vm.chassis, incoming=False)
            return
        status = mon.cmd("query-status")["status"]
        if status in ("paused", "postmigrate", "finish-migrate"):
            mon.cmd("cont")
        elif status != "running":
            raise GuestError(f"{mon.label} is {status!r}; stop it ('cutover lab down') "
                             "and start the lab again")

    def prepare_destination(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        if dst.name == vm.chassis:
            raise InvalidMigration(f"VM {vm.name!r} already runs on {dst.name!r}")
        mon = self._maybe_monitor(vm, dst.name)
        if mon is not None:
            status = mon.cmd("query-status")["status"]
            if status == "inmigrate" and self._incoming_ready(vm, dst.name):
                return
            raise GuestError(f"{mon.label} already exists ({status}); stop it first "
                             "(e.g. abort the migration) before migrating there")
        had_tap = qemu_proc.tap_exists(dst.netns, vm.tap)
        mon = self._boot(vm, dst.name, incoming=True)
        files = self._files(vm, dst.name)
        try:
            if not had_tap:
                qemu_proc.link_up(dst.netns, vm.tap)
            mon.cmd("migrate-set-capabilities",
                    capabilities=[{"capability": "events", "state": True}])
            mon.cmd("migrate-incoming", uri=f"unix:{files.incoming}")
        except BaseException:
            self._kill(vm, dst.name)
            raise

    def attach_destination(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        """Nothing: QEMU holds its TAP from the start (``script=no``, like managed='no')."""

    def copy_memory(self, vm: VmSpec, dst: ChassisEndpoint, duration_ms: float) -> None:
        """Real pre-copy until ``pre-switchover``; ``duration_ms`` (emulator only) is unused."""
        self.start_copy(vm, dst, hold_convergence=False)
        self.wait_copied(vm, dst)

    # --- OverlapsCopy: the pre-copy runs while the orchestrator waits for readiness ---

    def start_copy(self, vm: VmSpec, dst: ChassisEndpoint, hold_convergence: bool) -> None:
        """``migrate`` with ``pause-before-switchover`` (always: it is the rollback point and
        the last hold), returning at once. The bandwidth and the downtime limit are set on
        every start, so an aborted held migration leaves nothing behind for the next one;
        ``hold_convergence`` starts with downtime-limit 0 (see :meth:`keep_held`)."""
        src = self._monitor(vm, vm.chassis)
        dst_files = self._files(vm, dst.name)
        if qemu_proc.find_pid(dst_files) is None:
            raise GuestError(f"no incoming {dst_files.label}: prepare the destination first")
        src.drain()
        mark = len(src.events)
        src.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "events", "state": True},
            {"capability": "pause-before-switchover", "state": True},
        ])
        src.cmd("migrate-set-parameters", **{
            "max-bandwidth": int(self._bandwidth_mib() * 2**20),
            "downtime-limit": 0 if hold_convergence else self.downtime_limit_ms})
        self._runs[vm.name] = {"mark": mark, "dst": dst.name, "started_ms": time.time() * 1e3,
                               "held": hold_convergence, "monotonic": time.monotonic(),
                               "stage": "copy", "plan": self._hold_plan()}
        src.cmd("migrate", uri=f"unix:{dst_files.incoming}")

    def keep_held(self, vm: VmSpec, until: threading.Event, timeout_s: float) -> None:
        """Keep the held copy of ``vm`` from converging while the source runs, until
        ``until`` is set (WaitTimeout after ``timeout_s``).

        downtime-limit 0 alone holds QEMU >= 8.0 (it re-syncs the dirty bitmap whenever
        the estimate is at or below the threshold), but NOT QEMU 7.2 (Debian 12), measured:
        7.2 syncs only when the pending RAM is below bandwidth x downtime-limit, so with 0
        the first pass drains the bitmap to 0 and the migration completes after one pass
        (pre-switchover 0.51 s after ``migrate``, dirty-sync-count 1, same as unheld).
        So this also watches ``query-migrate`` (QEMU sends no event before a pass ends)
        and throttles the end of the pass in two stages (:mod:`cutover.guest.qemu_hold`):
        a moderate bandwidth polled every 2 ms from a few full-speed bursts before the end,
        then a trickle of one page per 100 ms window once only a small tail (a few MiB) is
        left. Best
        effort: if the pass ends anyway, QEMU stops in ``pre-switchover`` as with
        ``before-switchover`` (the guest pause shows it)."""
        run = self._held_run(vm)
        src = self._monitor(vm, vm.chassis)
        deadline = time.monotonic() + timeout_s
        while not until.wait(HoldPlan.poll_s(run["stage"])):
            if time.monotonic() > deadline:
                raise WaitTimeout(f"readiness while holding the copy of {vm.name}", timeout_s,
                                  f"QEMU {src.cmd('query-migrate').get('status')}, hold "
                                  f"stage {run['stage']}")
            self._hold_step(run, src)

    def hold_to_last_pass(self, vm: VmSpec) -> None:
        """Return once the held copy is down to its tail (trickling) or is no longer
        active: what is left is QEMU's last pass. WaitTimeout after the driver's
        migration timeout."""
        run = self._held_run(vm)
        src = self._monitor(vm, vm.chassis)
        deadline = time.monotonic() + self.migrate_timeout_s
        while not self._hold_step(run, src):
            if time.monotonic() > deadline:
                raise WaitTimeout(f"the pre-copy of {vm.name} to reach its last pass",
                                  self.migrate_timeout_s,
                                  f"QEMU {src.cmd('query-migrate').get('status')}, hold "
                                  f"stage {run['stage']}")
            time.sleep(HoldPlan.poll_s(run["stage"]))

    def _hold_step(self, run: dict[str, Any], src: Monitor) -> bool:
        """One look at a held copy, throttling it as its plan says. True when it is
        trickling at its tail (or no longer active)."""
        if run["stage"] == "trickle":
            return True
        info = src.cmd("query-migrate")
        ram = info.get("ram") or {}
        remaining = ram.get("remaining")
        if info.get("status") != "active":
            return info.get("status") not in ("setup", None)
        if not isinstance(remaining, int):
            return False
        plan: HoldPlan = run["plan"]
        stage, bandwidth = plan.step(run["stage"], remaining)
        if bandwidth is not None:
            src.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth})
        if stage != run["stage"]:
            key = "trickle" if stage == "trickle" else "approach"
            run[f"{key}_ms"] = time.time() * 1e3
            run[f"{key}_remaining_mb"] = round(remaining / 2**20, 3)
            run["stage"] = stage
        return stage == "trickle"

    def release_convergence(self, vm: VmSpec) -> None:
        """The real bandwidth and downtime limit again: QEMU finishes the pass and
        converges. Measured on 7.2: the migration thread sleeps out its 100 ms rate-limit
        window first (0-100 ms), then sends the tail at full speed and, its threshold
        still computed with downtime-limit 0, converges as soon as the pass ends."""
        run = self._runs.get(vm.name)
        if run is None or not run.get("held") or "released_ms" in run:
            return
        self._monitor(vm, vm.chassis).cmd("migrate-set-parameters", **{
            "max-bandwidth": int(self._bandwidth_mib() * 2**20),
            "downtime-limit": self.downtime_limit_ms})
        run["released_ms"] = time.time() * 1e3

    def on_source_stopped(self, vm: VmSpec, callback: Callable[[float], None]) -> None:
        """``callback`` with the timestamp of the source's ``STOP`` of ``vm``'s migration,
        run right after :meth:`switchover` has sent ``migrate-continue``.

        With ``pause-before-switchover`` (always on here) QEMU stops the source's vCPUs,
        announces ``STOP`` then ``pre-switchover``, and waits for us: the event reader sees
        both, and the first moment the migration's thread is free after them is once it
        has let QEMU go on. Run any earlier (from the reader, at the STOP) a callback that
        makes a round trip - the TAP gate's open through the destination's agent - delays
        ``migrate-continue`` by that much: measured under L2, the guest pause went from
        7.7 to 15.6 ms median (from a thread of its own: 5.9 -> 11.9 ms, the GIL shared
        with the reader); after it, the round trip overlaps QEMU's stop-and-copy. Not run
        if the migration is aborted (the caller's rollback owns that case)."""
        self._monitor(vm, vm.chassis)  # GuestError now if there is no source
        self._stop_hooks.setdefault(vm.name, []).append(callback)

    def wait_copied(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        """Until the source reports ``pre-switchover`` (its vCPUs are stopped then)."""
        run = self._runs.get(vm.name)
        if run is None:
            raise GuestError(f"{vm.name}: no copy was started")
        src = self._monitor(vm, vm.chassis)
        started = run["monotonic"]

        def both_alive() -> None:  # a dead end fails the copy at once, not at the timeout
            for chassis, role in ((vm.chassis, "source"), (dst.name, "incoming")):
                files = self._files(vm, chassis)
                if qemu_proc.find_pid(files) is None:
                    raise GuestError(
                        f"the {role} {files.label} died "
                        f"{(time.monotonic() - started) * 1000:.0f} ms into the pre-copy; "
                        f"its console ({files.serial}) ends: "
                        f"{qemu_proc.read_text(files.serial)[-200:]!r}")

        ev = src.wait_event(is_migration({"pre-switchover", *ENDED}), self.migrate_timeout_s,
                            f"pre-copy of {vm.name} to {dst.name}", since=run["mark"],
                            check=both_alive)
        status = ev["data"]["status"]
        if status != "pre-switchover":
            info = src.cmd("query-migrate")
            raise GuestError(f"migration of {vm.name} to {dst.name} ended {status} during "
                             f"pre-copy: {info.get('error-desc', 'no error given')}")
        run["pre_switchover_ms"] = event_ms(ev)

    def pause_source(self, vm: VmSpec, window_ms: float = 0.0) -> float:
        """The source's STOP timestamp: QEMU stopped it on entering ``pre-switchover``
        (``window_ms``, the emulator's stop-and-copy, is real here and unused)."""
        run = self._runs.get(vm.name)
        if run is None or "pre_switchover_ms" not in run:
            raise GuestError(f"{vm.name}: QEMU pauses the source only at the end of the "
                             "pre-copy; copy_memory must come first")
        src = self._monitor(vm, vm.chassis)
        stop = src.wait_event(is_event("STOP"), 2.0, "the source's STOP", since=run["mark"])
        run["stop_ms"] = event_ms(stop)
        return float(run["stop_ms"])

    def switchover(self, vm: VmSpec, dst: ChassisEndpoint) -> float:
        run = self._runs.get(vm.name)
        if run is None or "stop_ms" not in run:
            raise GuestError(f"{vm.name}: switchover before the source paused")
        src, dmon = self._monitor(vm, vm.chassis), self._monitor(vm, dst.name)
        src.cmd("migrate-continue", state="pre-switchover")
        for callback in self._stop_hooks.pop(vm.name, []):
            callback(float(run["stop_ms"]))
        resume = self._wait_resume(vm, src, dmon, run["mark"])
        done = src.wait_event(is_migration(ENDED), 10.0, "the source to complete",
                              since=run["mark"])
        info = src.cmd("query-migrate")
        figures = migration_figures(info)
        resume_ms = event_ms(resume)
        figures.update(
            stop_at_ms=run["stop_ms"], resume_at_ms=resume_ms,
            guest_pause_ms=round(resume_ms - run["stop_ms"], 3),
            pre_switchover_hold_ms=round(resume_ms - run["pre_switchover_ms"], 3),
            source_status=done["data"]["status"], ram_mb=self.ram_mb,
            max_bandwidth_mib=self.max_bandwidth_mib,
            copy_total_ms=round(resume_ms - run["started_ms"], 3),
        )
        if run.get("held"):
            figures.update(self._hold_figures(run, resume_ms))
        self._figures[vm.name] = figures
        return resume_ms

    def guest_events(self, vm: VmSpec, chassis: str) -> list[dict[str, Any]]:
        """STOP/RESUME/MIGRATION events seen on ``chassis`` (``qemu.stop``, ...)."""
        mon = self._mons.get((vm.name, chassis))
        if mon is None:
            return []
        mon.drain()
        out = []
        for e in mon.events:
            data = e.get("data") or {}
            out.append({"t_ms": event_ms(e), "event": f"qemu.{str(e.get('event')).lower()}",
                        "detail": str(data.get("status") or data.get("reason") or "")})
        return out

    def finish_source(self, vm: VmSpec) -> None:
        self._stop_hooks.pop(vm.name, None)
        self.stop(vm, vm.chassis)
        self._runs.pop(vm.name, None)

    def abort(self, vm: VmSpec, dst: ChassisEndpoint) -> None:
        """Cancel, stop the destination, resume + announce the source. Idempotent; every
        part is tried even if one fails."""
        failures: list[str] = []
        run = self._runs.pop(vm.name, {})
        self._stop_hooks.pop(vm.name, None)
        src = None
        try:
            src = self._monitor(vm, vm.chassis)
            status = src.cmd("query-migrate").get("status", "none")
            if status in ACTIVE:
                src.cmd("migrate_cancel")
                src.wait_event(is_migration(ENDED), 10.0, "the migration to cancel",
                               since=run.get("mark", 0))
        except (GuestError, WaitTimeout) as e:
            failures.append(f"cancel: {e}")
        if dst.name != vm.chassis:
            try:
                self.stop(vm, dst.name)
            except GuestError as e:
                failures.append(f"destination: {e}")
        try:
            if src is not None:
                if src.cmd("query-status")["status"] != "running":
                    src.cmd("cont")
                src.cmd("announce-self", initial=50, max=550, rounds=5, step=100)
        except GuestError as e:
            failures.append(f"source: {e}")
        if failures:
            raise GuestError(f"abort of {vm.name!r} incomplete: {'; '.join(failures)}")

    def stop(self, vm: VmSpec, chassis: str) -> None:
        files = self._files(vm, chassis)
        mon = self._mons.pop((vm.name, chassis), None)
        pid = qemu_proc.find_pid(files)
        if mon is not None:
            if pid is not None:
                with contextlib.suppress(GuestError):  # the kill below still ends it
                    mon.cmd("quit", timeout_s=2.0)
            mon.close()
        if pid is not None:
            qemu_proc.wait_dead(pid, files, 2.0)
        qemu_proc.kill(files)

    def guest_state(self, vm: VmSpec, chassis: str) -> GuestState:
        state, pid = qemu_proc.liveness(self._files(vm, chassis))
        if state != "running":
            return GuestState(state, f"{self._files(vm, chassis).pidfile}")
        try:
            status = self.status(vm, chassis)
        except GuestError as e:
            return GuestState("unknown", f"pid {pid} runs but QMP does not answer: {e}")
        named = {"running": "running", "inmigrate": "incoming", "paused": "paused",
                 "postmigrate": "paused", "finish-migrate": "paused"}
        return GuestState(named.get(str(status), str(status)), f"pid {pid}, QEMU {status}")

    # --- beyond the Protocol -------------------------------------------------------

    def last_migration(self, vm: VmSpec) -> dict[str, Any]:
        """QEMU's figures of ``vm``'s last switchover (``stop_at_ms``/``resume_at_ms``: wall
        ms of the source's STOP and the destination's RESUME events; ``guest_pause_ms``:
        the time between them, by QEMU's timestamps; ``total_ms``, ``downtime_ms``,
        ``setup_ms``, ``ram_transferred_mb`` from ``query-migrate``); {} if none."""
        return dict(self._figures.get(vm.name, {}))

    def status(self, vm: VmSpec, chassis: str) -> str | None:
        """QEMU's run state of ``vm`` on ``chassis`` (``running``, ``inmigrate`` ...), or None."""
        mon = self._maybe_monitor(vm, chassis)
        return None if mon is None else str(mon.cmd("query-status")["status"])

    def files(self, vm: VmSpec, chassis: str) -> QemuFiles:
        return self._files(vm, chassis)

    def close(self) -> None:
        """Close the QMP connections and their event loop (the QEMUs keep running)."""
        for mon in self._mons.values():
            mon.close()
        self._mons.clear()
        self._loop.close()

    # --- internals -----------------------------------------------------------------

    def _bandwidth_mib(self) -> float:
        return self.max_bandwidth_mib or DEFAULT_BANDWIDTH_MIB

    def _hold_plan(self) -> HoldPlan:
        return HoldPlan.for_copy(self.ram_mb * 2**20, int(self._bandwidth_mib() * 2**20))

    @staticmethod
    def _hold_figures(run: dict[str, Any], resume_ms: float) -> dict[str, Any]:
        """The run-record figures of a held copy (ms are from the start of the copy)."""
        started = run["started_ms"]

        def since_start(key: str) -> float | None:
            return round(run[key] - started, 3) if key in run else None

        plan: HoldPlan = run["plan"]
        released = run.get("released_ms")
        return {
            "convergence_held": True,
            "convergence_held_ms": round((released or resume_ms) - started, 3),
            "hold_approach_at_ms": since_start("approach_ms"),
            "hold_approach_remaining_mb": run.get("approach_remaining_mb"),
            "hold_approach_bandwidth_mib": round(plan.approach_bandwidth / 2**20, 3),
            "hold_tail_target_mb": round(plan.tail_bytes / 2**20, 3),
            "trickle_at_ms": since_start("trickle_ms"),
            "trickle_reserve_mb": run.get("trickle_remaining_mb"),
            "release_to_stop_ms": (round(run["stop_ms"] - released, 3)
                                   if released is not None else None),
        }

    def _held_run(self, vm: VmSpec) -> dict[str, Any]:
        run = self._runs.get(vm.name)
        if run is None or not run.get("held"):
            raise GuestError(f"{vm.name}: no held copy runs (start_copy with "
                             "hold_convergence first)")
        return run

    def _files(self, vm: VmSpec, chassis: str) -> QemuFiles:
        return QemuFiles(Path(self.site.guest_dir), vm.name, chassis)

    def _monitor(self, vm: VmSpec, chassis: str) -> Monitor:
        mon = self._maybe_monitor(vm, chassis)
        if mon is None:
            files = self._files(vm, chassis)
            raise GuestError(f"no {files.label} runs (no live QEMU in {files.pidfile})")
        return mon

    def _maybe_monitor(self, vm: VmSpec, chassis: str) -> Monitor | None:
        """The QMP connection to the live QEMU of ``vm`` on ``chassis``, or None."""
        files = self._files(vm, chassis)
        key = (vm.name, chassis)
        pid = qemu_proc.find_pid(files)
        mon = self._mons.get(key)
        if pid is None:
            if mon is not None:
                self._mons.pop(key).close()
            return None
        if mon is None:
            mon = Monitor(files.label, files.qmp, self._loop)
            mon.connect()
            self._mons[key] = mon
        return mon

    def _incoming_ready(self, vm: VmSpec, chassis: str) -> bool:
        return self._files(vm, chassis).incoming.exists()

    def _boot(self, vm: VmSpec, chassis: str, incoming: bool) -> Monitor:
        image = ensure_image(self.progress)
        files = self._files(vm, chassis)
        qemu_proc.kill(files)  # a dead predecessor's files
        argv = qemu_proc.qemu_argv(image, vm, files, self.ram_mb, qemu_proc.accel(), incoming,
                                   qemu_proc.guest_offloads())
        netns = self.site.chassis_named(chassis).netns
        pid = qemu_proc.spawn(argv, files, netns)
        try:
            if not incoming:
                self.progress(f"booting {files.label} ({self.ram_mb} MB, TCG)")
                qemu_proc.wait_booted(files, pid, self.boot_timeout_s)
            return self._monitor(vm, chassis)
        except BaseException:
            self._kill(vm, chassis)
            raise

    def _kill(self, vm: VmSpec, chassis: str) -> None:
        mon = self._mons.pop((vm.name, chassis), None)
        if mon is not None:
            mon.close()
        qemu_proc.kill(self._files(vm, chassis))

    def _wait_resume(self, vm: VmSpec, src: Monitor, dmon: Monitor,
                     mark: int) -> dict[str, Any]:
        """The destination's RESUME, or an error as soon as the source reports failure
        or the destination QEMU dies (both sockets are read in turn)."""
        deadline = time.monotonic() + 30.0
        failed = is_migration({"failed", "cancelled"})
        while True:
            found = dmon.find(is_event("RESUME"))
            if found is not None:
                return found
            bad = src.find(failed, since=mark)
            if bad is not None:
                raise GuestError(f"migration of {vm.name} {bad['data']['status']} at the "
                                 "switchover; the source keeps it")
            if time.monotonic() > deadline:
                raise WaitTimeout(f"{dmon.label} to resume", 30.0,
                                  f"destination events {[e.get('event') for e in dmon.events]}")
            dmon.pull(0.02)
            src.drain()
