"""Turning raw probe samples into the client-visible blackout.

The number cutover reports is what a client of the VM experiences: how long it went
without hearing from the VM. That is measured between *replies*: a loss window is a
maximal run of consecutive unanswered probes (in send order), and its gap is the time
from the last reply before the run to the first reply after it. Counting lost probes
times the interval would understate it (a reply that was merely delayed still leaves
the client waiting) and would depend on the probe rate; measuring between replies does
neither, and its resolution is one probe interval. The blackout is the largest gap,
because one long silence is what breaks a TCP session or trips a health check, not
the sum of scattered single losses.

Pure functions over ``(seq, sent_ms, recv_ms | None)`` tuples; no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from cutover.errors import InputError

Sample = tuple[int, float, float | None]
"""One probe: sequence number, wall ms sent, wall ms its reply arrived (None: lost)."""


@dataclass(frozen=True)
class LossWindow:
    """A maximal run of consecutive lost probes and the silence it caused."""

    first_seq: int
    last_seq: int
    lost: int
    start_ms: float
    """Reply time of the last answered probe before the run (open: first lost probe's send)."""
    end_ms: float
    """Reply time of the first answered probe after the run (open: last lost probe's send)."""
    gap_ms: float
    open: bool
    """True if the run touches the start or end of the capture: gap_ms is a lower bound."""


@dataclass(frozen=True)
class ProbeSummary:
    probes_sent: int
    probes_lost: int
    blackout_ms: float
    """Largest loss-window gap; 0.0 if no probe was lost."""
    windows: tuple[LossWindow, ...]
    duplicates: int
    interval_ms: float
    """Probe interval: the resolution of every gap above."""

    @property
    def loss_ratio(self) -> float:
        return self.probes_lost / self.probes_sent if self.probes_sent else 0.0


def summarize(
    probes: Sequence[Sequence[object]],
    interval_ms: float,
    duplicates: int = 0,
) -> ProbeSummary:
    """Summarize samples as returned by the prober (lists or tuples, any order).

    Samples are ordered by sequence number (= send order) first. Raises
    :class:`InputError` on a non-positive interval or repeated sequence numbers.
    """
    if not interval_ms > 0:
        raise InputError(f"probe interval must be > 0 ms, got {interval_ms}")
    samples = sorted((_sample(p) for p in probes), key=lambda s: s[0])
    for a, b in itertools.pairwise(samples):
        if a[0] == b[0]:
            raise InputError(f"probe sequence number {a[0]} appears twice")
    windows: list[LossWindow] = []
    i = 0
    while i < len(samples):
        if samples[i][2] is not None:
            i += 1
            continue
        j = i
        while j + 1 < len(samples) and samples[j + 1][2] is None:
            j += 1
        windows.append(_window(samples, i, j))
        i = j + 1
    lost = sum(w.lost for w in windows)
    return ProbeSummary(
        probes_sent=len(samples),
        probes_lost=lost,
        blackout_ms=max((w.gap_ms for w in windows), default=0.0),
        windows=tuple(windows),
        duplicates=duplicates,
        interval_ms=float(interval_ms),
    )


def _window(samples: list[Sample], first: int, last: int) -> LossWindow:
    """The window for lost samples ``first..last`` (indices), bounded by answered neighbours."""
    is_open = False
    if first > 0:
        before = samples[first - 1][2]
        assert before is not None  # runs are maximal
        start = before
    else:
        start, is_open = samples[first][1], True
    if last + 1 < len(samples):
        after = samples[last + 1][2]
        assert after is not None
        end = after
    else:
        end, is_open = samples[last][1], True
    # Reordered replies could make end < start; silence cannot be negative.
    return LossWindow(
        first_seq=samples[first][0],
        last_seq=samples[last][0],
        lost=last - first + 1,
        start_ms=start,
        end_ms=end,
        gap_ms=max(0.0, end - start),
        open=is_open,
    )


def _sample(p: Sequence[object]) -> Sample:
    if len(p) != 3:
        raise InputError(f"probe sample must be (seq, sent_ms, recv_ms|None), got {p!r}")
    seq, sent, recv = p
    if not isinstance(seq, int) or not isinstance(sent, int | float):
        raise InputError(f"probe sample has a bad seq or send time: {p!r}")
    if recv is not None and not isinstance(recv, int | float):
        raise InputError(f"probe sample has a bad receive time: {p!r}")
    return (seq, float(sent), None if recv is None else float(recv))
