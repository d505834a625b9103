"""Turning raw probe samples into what a client of the VM experienced.

Network convergence benchmarks (RFC 6413's loss-derived vs. time-derived convergence
times) measure an outage two ways, and so does cutover:

``blackout_ms`` (time-derived, the headline number)
    The longest interval, by *arrival* time, in which the client received no reply at
    all: sort the first reply of every answered probe by its receive timestamp and take
    the largest gap between neighbours, including the edges of the capture (its first
    probe sent -> the first reply, the last reply -> its last probe sent). It uses
    receive timestamps only, so it is what a user of the VM feels: a reply that is late
    does not end a silence before it arrives, reordered replies change nothing, and a
    delay spike without any loss shows as a silence too. With no loss and no delay it is
    about one probe interval (the spacing of replies), never 0.
``loss_outage_ms`` (loss-derived)
    Probes lost x probe interval: how much of the offered traffic was lost, in time. It
    is smaller than the blackout when replies were delayed rather than lost (frames
    queued in a paused guest's TAP are answered after it resumes), and is 0 for a pure
    delay spike.
``max_rtt_ms``
    The largest round-trip time of an answered probe: delay the blackout hides when it
    is shorter than the longest silence.
``duplicates``
    Replies beyond the first for one probe (traffic cloned to two chassis while both
    answer). A duplicate does not end a silence: only first replies are timestamped.

A silence that touches an edge of the capture is ``open``: its length is a lower bound
(the VM had not answered yet when the capture started, or had stopped answering when it
ended). A caller that needs a number must treat an open longest silence as "could not
measure" rather than quote it.

Pure functions over ``(seq, sent_ms, recv_ms | None)`` tuples; no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cutover.errors import InputError

Sample = tuple[int, float, float | None]
"""One probe: sequence number, wall ms sent, wall ms its first reply arrived (None: lost)."""

LISTED_SILENCE_INTERVALS = 10
"""Silences of at least this many probe intervals (and :data:`LISTED_SILENCE_MIN_MS`) are
listed in :attr:`ProbeSummary.silences` for plots; shorter ones are ordinary jitter."""
LISTED_SILENCE_MIN_MS = 20.0


@dataclass(frozen=True)
class Silence:
    """An interval in which no reply arrived: between two consecutive first replies by
    arrival time, or between a capture edge and the nearest reply."""

    start_ms: float
    """Arrival of the last reply before it (or the capture's first send, if open)."""
    end_ms: float
    """Arrival of the first reply after it (or the capture's last send, if open)."""
    open: bool = False
    """Touches the start or end of the capture: ``gap_ms`` is a lower bound."""

    @property
    def gap_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class LossRun:
    """A maximal run of consecutive unanswered probes, in send order (loss-derived view)."""

    first_seq: int
    last_seq: int
    lost: int
    first_sent_ms: float
    last_sent_ms: float


@dataclass(frozen=True)
class ProbeSummary:
    probes_sent: int
    probes_lost: int
    blackout_ms: float
    """Longest silence (see the module docstring); 0.0 only for an empty capture."""
    longest: Silence | None
    """The silence behind ``blackout_ms`` (None for an empty capture)."""
    silences: tuple[Silence, ...]
    """Silences long enough to list (:data:`LISTED_SILENCE_INTERVALS`), in time order."""
    loss_runs: tuple[LossRun, ...]
    loss_outage_ms: float
    """``probes_lost * interval_ms``."""
    max_rtt_ms: float | None
    """None when no probe was answered."""
    duplicates: int
    max_send_gap_ms: float
    """Largest gap between consecutive probe sends: a prober that fell behind makes a
    silence of its own, so a blackout near this value says more about the client."""
    interval_ms: float
    """Probe interval: the resolution of every time above."""

    @property
    def loss_ratio(self) -> float:
        return self.probes_lost / self.probes_sent if self.probes_sent else 0.0

    @property
    def blackout_open(self) -> bool:
        """The longest silence touches the capture's edge: ``blackout_ms`` is a lower bound."""
        return self.longest is not None and self.longest.open


def summarize(
    probes: Sequence[Sequence[object]],
    interval_ms: float,
    duplicates: int = 0,
) -> ProbeSummary:
    """Summarize samples as returned by the prober (lists or tuples, any order).

    ``duplicates`` counts duplicate replies the prober already folded away; a sequence
    number that appears more than once in ``probes`` is folded here (its earliest reply
    kept, the others counted as duplicates). Raises :class:`InputError` on a non-positive
    interval, a malformed sample, two samples of one probe with different send times, or
    a reply stamped before its probe was sent.
    """
    if not (interval_ms > 0 and math.isfinite(interval_ms)):
        raise InputError(f"probe interval must be a finite number > 0 ms, got {interval_ms}")
    if duplicates < 0:
        raise InputError(f"duplicate replies cannot be negative, got {duplicates}")
    samples, folded = _fold(_sample(p) for p in probes)
    arrivals = sorted(r for _, _, r in samples if r is not None)
    silences = _silences(samples, arrivals)
    longest = max(silences, key=lambda s: s.gap_ms, default=None)
    runs = _loss_runs(samples)
    lost = sum(r.lost for r in runs)
    rtts = [r - s for _, s, r in samples if r is not None]
    listed_min = max(LISTED_SILENCE_MIN_MS, LISTED_SILENCE_INTERVALS * interval_ms)
    return ProbeSummary(
        probes_sent=len(samples),
        probes_lost=lost,
        blackout_ms=longest.gap_ms if longest is not None else 0.0,
        longest=longest,
        silences=tuple(s for s in silences if s.gap_ms >= listed_min or s is longest),
        loss_runs=tuple(runs),
        loss_outage_ms=lost * float(interval_ms),
        max_rtt_ms=max(rtts, default=None),
        duplicates=duplicates + folded,
        max_send_gap_ms=max((b[1] - a[1] for a, b in itertools.pairwise(samples)), default=0.0),
        interval_ms=float(interval_ms),
    )


def _silences(samples: list[Sample], arrivals: list[float]) -> list[Silence]:
    """Every gap between consecutive arrivals, plus the open edges of the capture."""
    if not samples:
        return []
    first_sent, last_sent = samples[0][1], samples[-1][1]
    if not arrivals:
        return [Silence(first_sent, last_sent, open=True)]
    out = [Silence(first_sent, arrivals[0], open=samples[0][2] is None)]
    out += [Silence(a, b) for a, b in itertools.pairwise(arrivals)]
    if last_sent > arrivals[-1]:
        # Probes still went out after the last reply: the silence runs to the capture's end.
        out.append(Silence(arrivals[-1], last_sent, open=True))
    return out


def _loss_runs(samples: list[Sample]) -> list[LossRun]:
    runs: list[LossRun] = []
    for lost, group in itertools.groupby(samples, key=lambda s: s[2] is None):
        if lost:
            members = list(group)
            runs.append(LossRun(members[0][0], members[-1][0], len(members),
                                members[0][1], members[-1][1]))  # fmt: skip
    return runs


def _fold(samples: Iterable[Sample]) -> tuple[list[Sample], int]:
    """Sort by sequence number and merge repeated ones: (samples, duplicate replies)."""
    by_seq: dict[int, Sample] = {}
    folded = 0
    for seq, sent, recv in sorted(samples, key=lambda s: s[0]):
        if seq not in by_seq:
            by_seq[seq] = (seq, sent, recv)
            continue
        _, sent0, recv0 = by_seq[seq]
        if sent0 != sent:
            raise InputError(
                f"probe {seq} appears twice with different send times ({sent0} and {sent})"
            )
        if recv is not None and recv0 is not None:
            folded += 1
        replies = [r for r in (recv0, recv) if r is not None]
        by_seq[seq] = (seq, sent, min(replies) if replies else None)
    return list(by_seq.values()), folded


def _sample(p: Sequence[object]) -> Sample:
    if len(p) != 3:
        raise InputError(f"probe sample must be (seq, sent_ms, recv_ms|None), got {p!r}")
    seq, sent, recv = p
    if not isinstance(seq, int) or isinstance(seq, bool) or not _is_time(sent):
        raise InputError(f"probe sample has a bad seq or send time: {p!r}")
    if recv is not None and not _is_time(recv):
        raise InputError(f"probe sample has a bad receive time: {p!r}")
    assert isinstance(sent, int | float)
    if recv is not None:
        assert isinstance(recv, int | float)
        if recv < sent:
            raise InputError(f"probe {seq}: reply stamped {sent - recv:.3f} ms before its send")
    return (seq, float(sent), None if recv is None else float(recv))


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
