"""How a held QEMU 7.2 pre-copy is kept from converging: the decisions, apart from QMP.

Why a hold needs more than ``downtime-limit 0`` on QEMU 7.2 is in
:meth:`cutover.guest.qemu.QemuHypervisor.keep_held`. What this module decides is *when*
to throttle the pass and by how much, from ``query-migrate``'s ``ram.remaining`` (bytes
of guest RAM still dirty in the current pass), looked at every poll.

Facts of QEMU 7.2's migration thread (migration/migration.c, ram.c) that size it:

- ``max-bandwidth`` is enforced per 100 ms window (``BUFFER_DELAY``): at the start of a
  window the thread sends its whole quota (``max-bandwidth / 10`` bytes) as fast as it
  can, then sleeps until the window ends. A poll therefore cannot stop a burst: whatever
  one window's quota covers passes between two polls.
- A zero page costs ~9 bytes of the quota, a normal page ~4 KiB; so a burst covers far
  more RAM than its bytes where the guest's RAM is zero (measured on the lab's 128 MiB
  guest: the last 32 MiB of the first pass held ~5 MiB of normal pages and went by in one
  burst at 128 MiB/s: the old single-stage hold, throttling at a quarter of the RAM,
  missed the end of the pass in 3 of 8 quiet runs).
- A sleeping thread sees a new ``max-bandwidth`` only when its window ends: a release
  takes effect 0-100 ms after ``migrate-set-parameters`` (nothing wakes it earlier in
  pre-copy; ``rate_limit_sem`` is posted only by postcopy page requests). After that the
  rest of the pass goes at full speed and, the threshold still being 0, QEMU converges
  as soon as the pass ends.

So the hold has three stages:

``copy``      full bandwidth, polled every :data:`HOLD_POLL_S`;
``approach``  once less than :attr:`HoldPlan.approach_bytes` is left (five full-speed
              bursts' worth, at most the RAM): ``max-bandwidth`` drops to
              :attr:`HoldPlan.approach_bandwidth` (:data:`HOLD_APPROACH_BANDWIDTH`, or the
              real one if lower) and the pass is polled every :data:`HOLD_FAST_POLL_S`;
``trickle``   once less than :attr:`HoldPlan.tail_bytes` is left (two approach bursts:
              sized from the approach bandwidth x the 100 ms window x
              :data:`HOLD_TAIL_SAFETY`, not from the RAM size): :data:`TRICKLE_BYTES_S`,
              one page a window, until released.

Every threshold is sized from bandwidths, none from the RAM (a 4 GiB guest is throttled
as late as a 128 MiB one); on this machine's 128 MiB guest at QEMU's default 128 MiB/s
that is: approach from 64 MiB left at 32 MiB/s, trickle from 6.4 MiB left (measured:
docs/measurements/2026-11-30-hold-two-stage). At a real bandwidth of 32 MiB/s or less the
approach changes only the polling, so it costs no time there.

The tail left at the release is what QEMU sends before it converges: a few MiB instead of
a quarter of the RAM.
"""

from __future__ import annotations

from dataclasses import dataclass

HOLD_POLL_S = 0.01
"""How often a held copy is looked at while far from the end of its pass."""
HOLD_FAST_POLL_S = 0.002
"""How often once it is throttled to the approach bandwidth (a QMP round trip is ~1 ms)."""
TRICKLE_BYTES_S = 4096
"""``max-bandwidth`` while a held copy waits at its tail: one page a window (a zero page
costs QEMU ~9 bytes of it, so ~45 zero pages a window)."""
QEMU_WINDOW_S = 0.1
"""QEMU's rate-limit window (``BUFFER_DELAY``, 100 ms): a quota is sent as one burst."""
HOLD_APPROACH_BURSTS = 5
"""The approach starts this many full-speed bursts before the end of the pass."""
HOLD_APPROACH_BANDWIDTH = 32 * 2**20
"""``max-bandwidth`` of the approach (bytes/s): bursts of 3.2 MiB, which never swept past
the tail in the lab's runs (16 of 16 held at QEMU's default 128 MiB/s)."""
HOLD_TAIL_SAFETY = 2
"""The tail is this many approach bursts (a burst covers more RAM than its bytes where
pages are zero)."""


@dataclass(frozen=True)
class HoldPlan:
    """The thresholds of one held copy (bytes of RAM, bytes per second).

    Build it with :meth:`for_copy`; :meth:`step` says what a poll's ``query-migrate``
    answer calls for."""

    approach_bytes: int
    approach_bandwidth: int
    tail_bytes: int

    @classmethod
    def for_copy(cls, ram_bytes: int, bandwidth: int) -> HoldPlan:
        """The plan for a guest of ``ram_bytes`` copied at ``bandwidth`` bytes/s."""
        if ram_bytes <= 0 or bandwidth <= 0:
            raise ValueError(f"a held copy needs RAM and bandwidth, got {ram_bytes} B at "
                             f"{bandwidth} B/s")
        approach_bw = max(min(bandwidth, HOLD_APPROACH_BANDWIDTH), TRICKLE_BYTES_S)
        tail = int(approach_bw * QEMU_WINDOW_S * HOLD_TAIL_SAFETY)
        approach = max(HOLD_APPROACH_BURSTS * int(bandwidth * QEMU_WINDOW_S), 2 * tail)
        return cls(approach_bytes=min(approach, ram_bytes), approach_bandwidth=approach_bw,
                   tail_bytes=tail)

    def step(self, stage: str, remaining: int) -> tuple[str, int | None]:
        """(the stage to be in, the ``max-bandwidth`` to set now or None) for a pass with
        ``remaining`` bytes left while in ``stage`` (``copy``/``approach``/``trickle``).
        Stages only move forward; both thresholds may be crossed in one poll, and then
        the trickle is set at once."""
        if stage not in STAGES:
            raise ValueError(f"unknown hold stage {stage!r}")
        if stage == "trickle":
            return stage, None
        if remaining < self.tail_bytes:
            return "trickle", TRICKLE_BYTES_S
        if stage == "copy" and remaining < self.approach_bytes:
            return "approach", self.approach_bandwidth
        return stage, None

    @staticmethod
    def poll_s(stage: str) -> float:
        """How long to wait before the next look in ``stage``."""
        return HOLD_POLL_S if stage == "copy" else HOLD_FAST_POLL_S


STAGES = ("copy", "approach", "trickle")
