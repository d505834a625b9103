"""Statistics over bench runs: medians per group, and ratios between strategies.

Pure functions over :class:`~cutover.bench.results.RunResult` so the numbers in a
report can be unit-tested and recomputed from any ``bench.json``.

Why medians: a lab blackout distribution has a long tail (a scheduler hiccup, a
late ovn-controller poll loop) and a handful of repetitions; a mean would let one
outlier speak for the strategy. Why ratios only *within one bench and one
condition*: absolute milliseconds depend on the machine, but two strategies run
alternately on the same lab under the same stall/load share those biases, so their
ratio is the number worth quoting.

Failed runs (``error`` set) are counted per group but never enter a statistic: a
run that did not complete has no meaningful blackout.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cutover.bench.results import RunResult

DEFAULT_KEY: tuple[str, ...] = ("strategy", "stall", "activation", "load")
"""Runs that share these fields are repetitions of the same experiment."""


_RUN_FIELDS = frozenset(RunResult.__dataclass_fields__)


@dataclass(frozen=True)
class GroupStats:
    """Summary of one group of runs. Medians are None when the group has no
    successful run (or, for optional measurements, no run that recorded them)."""

    fields: tuple[str, ...]
    values: tuple[str, ...]
    n: int
    """Successful runs: the ones every statistic below is computed over."""
    failed: int
    blackout_median_ms: float | None
    blackout_min_ms: float | None
    blackout_max_ms: float | None
    probes_lost_median: float | None
    loss_outage_median_ms: float | None
    max_rtt_median_ms: float | None
    duplicates_median: float | None
    ready_wait_median_ms: float | None
    migration_median_ms: float | None
    detection_latency_median_ms: float | None
    sb_writes_median: float | None

    def get(self, field: str) -> str:
        """The group's value of a key field, e.g. ``get("strategy")``."""
        try:
            return self.values[self.fields.index(field)]
        except ValueError:
            raise KeyError(f"{field!r} is not a grouping field of {self.fields}") from None

    def condition(self, exclude: Iterable[str] = ("strategy",)) -> tuple[tuple[str, str], ...]:
        """The key as (field, value) pairs without ``exclude``: what strategies share."""
        skip = set(exclude)
        return tuple((f, v) for f, v in zip(self.fields, self.values, strict=True) if f not in skip)


@dataclass(frozen=True)
class StrategyRatio:
    """``slower`` had ``value`` times the median blackout of ``faster`` in ``condition``."""

    condition: tuple[tuple[str, str], ...]
    slower: str
    faster: str
    slower_median_ms: float
    faster_median_ms: float

    @property
    def value(self) -> float | None:
        """None when the faster strategy had a zero median: no finite factor exists."""
        if self.faster_median_ms == 0:
            return None
        return self.slower_median_ms / self.faster_median_ms


def run_key(run: RunResult, key: Sequence[str] = DEFAULT_KEY) -> tuple[str, ...]:
    """The values of ``key`` fields of ``run``, as strings so any field can group."""
    unknown = [k for k in key if k not in _RUN_FIELDS]
    if unknown:
        raise ValueError(f"cannot group by {unknown}: not RunResult fields")
    return tuple(str(getattr(run, k)) for k in key)


def run_condition(run: RunResult, key: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The run's condition: its (field, value) pairs of ``key`` except the strategy."""
    return tuple((f, v) for f, v in zip(key, run_key(run, key), strict=True) if f != "strategy")


def varying_fields(conditions: Iterable[Iterable[tuple[str, str]]]) -> set[str]:
    """Fields whose value differs between ``conditions``.

    Only those need to label a condition; a field with one value across the whole
    bench is said once (in a title) instead of on every axis tick.
    """
    seen: dict[str, set[str]] = {}
    for condition in conditions:
        for f, v in condition:
            seen.setdefault(f, set()).add(v)
    return {f for f, vs in seen.items() if len(vs) > 1}


def key_for(runs: Iterable[RunResult]) -> tuple[str, ...]:
    """:data:`DEFAULT_KEY`, plus ``guest`` when the runs mix guest kinds and ``ovn`` when
    they mix OVN versions.

    A bench normally uses one guest kind, so ``guest`` is not in the default key; but
    an emulated guest and a QEMU guest are different experiments and must not share
    a median if a bench ever holds both.
    """
    runs = list(runs)
    key = DEFAULT_KEY
    if len({r.guest for r in runs}) > 1:
        key = (key[0], "guest", *key[1:])
    if len({r.ovn for r in runs}) > 1:  # a version matrix: each version its own group
        key = (key[0], "ovn", *key[1:])
    if any(r.fault != "none" for r in runs):  # each fault its own experiment
        key = (*key, "fault")
    if len({r.gate for r in runs}) > 1:  # gates compared: each gate its own group
        key = (*key, "gate")
    return key


def group_runs(
    runs: Iterable[RunResult], key: Sequence[str] = DEFAULT_KEY
) -> dict[tuple[str, ...], list[RunResult]]:
    """All runs (failed ones too) by key, groups in order of first appearance.

    Appearance order is the order the bench chose (e.g. ``legacy`` before ``claim``),
    which reads better in a report than alphabetical order.
    """
    groups: dict[tuple[str, ...], list[RunResult]] = {}
    for run in runs:
        groups.setdefault(run_key(run, key), []).append(run)
    return groups


def median_or_none(values: Iterable[float | int | None]) -> float | None:
    """Median of the values that are not None; None if there are none."""
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize_group(
    key_fields: Sequence[str], values: Sequence[str], runs: Sequence[RunResult]
) -> GroupStats:
    ok = [r for r in runs if r.ok]
    blackouts = [r.blackout_ms for r in ok]
    return GroupStats(
        fields=tuple(key_fields),
        values=tuple(values),
        n=len(ok),
        failed=len(runs) - len(ok),
        blackout_median_ms=median_or_none(blackouts),
        blackout_min_ms=min(blackouts) if blackouts else None,
        blackout_max_ms=max(blackouts) if blackouts else None,
        probes_lost_median=median_or_none(r.probes_lost for r in ok),
        loss_outage_median_ms=median_or_none(r.loss_outage_ms for r in ok),
        max_rtt_median_ms=median_or_none(r.max_rtt_ms for r in ok),
        duplicates_median=median_or_none(r.duplicates for r in ok),
        ready_wait_median_ms=median_or_none(r.ready_wait_ms for r in ok),
        migration_median_ms=median_or_none(r.migration_ms for r in ok),
        detection_latency_median_ms=median_or_none(r.detection_latency_ms for r in ok),
        sb_writes_median=median_or_none(r.sb_writes for r in ok),
    )


def summarize(runs: Iterable[RunResult], key: Sequence[str] = DEFAULT_KEY) -> list[GroupStats]:
    """One :class:`GroupStats` per group, including groups where every run failed."""
    return [summarize_group(key, k, g) for k, g in group_runs(runs, key).items()]


def find_group(groups: Iterable[GroupStats], **match: str) -> GroupStats:
    """The single group whose fields equal ``match``, e.g. ``strategy="claim"``."""
    found = [g for g in groups if all(g.get(f) == v for f, v in match.items())]
    if len(found) != 1:
        raise KeyError(f"{len(found)} groups match {match}, expected exactly one")
    return found[0]


def median_ratio(a: GroupStats, b: GroupStats) -> float | None:
    """Median blackout of ``a`` divided by that of ``b``.

    None when either group has no successful run or ``b``'s median is zero. Only
    meaningful for groups from the same bench (see the module docstring).
    """
    if a.blackout_median_ms is None or not b.blackout_median_ms:
        return None
    return a.blackout_median_ms / b.blackout_median_ms


def strategy_ratios(
    groups: Sequence[GroupStats], strategy_field: str = "strategy"
) -> list[StrategyRatio]:
    """Every pair of strategies that ran under the same condition, slower first.

    Orienting each pair so the factor is >= 1 makes "legacy: 41x claim" readable;
    pairs come in the order the groups appear. Groups without a successful run are
    skipped because they have no median to compare.
    """
    if not groups:
        return []
    if strategy_field not in groups[0].fields:
        raise ValueError(f"groups are not keyed by {strategy_field!r}: {groups[0].fields}")
    by_condition: dict[tuple[tuple[str, str], ...], list[GroupStats]] = {}
    for g in groups:
        if g.blackout_median_ms is not None:
            by_condition.setdefault(g.condition((strategy_field,)), []).append(g)
    ratios: list[StrategyRatio] = []
    for condition, members in by_condition.items():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                a_ms, b_ms = a.blackout_median_ms, b.blackout_median_ms
                assert a_ms is not None and b_ms is not None  # filtered above
                slow, fast = (a, b) if a_ms >= b_ms else (b, a)
                ratios.append(
                    StrategyRatio(
                        condition=condition,
                        slower=slow.get(strategy_field),
                        faster=fast.get(strategy_field),
                        slower_median_ms=max(a_ms, b_ms),
                        faster_median_ms=min(a_ms, b_ms),
                    )
                )
    return ratios
