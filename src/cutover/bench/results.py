"""The versioned bench result format: ``bench.json``.

A bench takes long and runs on a lab that may be gone tomorrow, so its raw
per-run measurements are the durable artefact; plots and tables are regenerated
from them. The format therefore carries a version: a reader that meets another
version refuses it (:class:`~cutover.errors.InputError`) instead of guessing, and
a format change must bump :data:`RESULT_FORMAT_VERSION`. For the same reason
``from_dict`` rejects unknown keys rather than silently dropping data.

Failed runs are kept, with their error, so a report can say how often a strategy
failed; :mod:`cutover.bench.stats` excludes them from the numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from cutover.errors import InputError

RESULT_FORMAT_VERSION = 2
"""2: ``blackout_ms`` is the longest silence by arrival time (docs/metrics.md), with
``loss_outage_ms``, ``max_rtt_ms`` and ``duplicates`` beside it. Version 1 measured the
blackout from the reply *before* a loss run, which a late reply could shrink to 0 ms: its
files are refused, not converted, because the number cannot be recomputed from them."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class TimelineEvent:
    """One step of a migration, as seen by the orchestrator or the prober."""

    t_ms: float
    """Milliseconds since the migration started (negative: before it started)."""
    event: str
    """Dotted step name, e.g. ``plug.done``, ``claim.seen``, ``switchover``."""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"t_ms": self.t_ms, "event": self.event, "detail": self.detail}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TimelineEvent:
        _reject_unknown(cls, d)
        return cls(
            t_ms=_field(d, "t_ms", float),
            event=_field(d, "event", str),
            detail=_field(d, "detail", str, ""),
        )


@dataclass(frozen=True)
class RunResult:
    """One migration of one VM with one strategy under one condition.

    The condition is (``guest``, ``stall``, ``activation``, ``load``); ``run_index``
    numbers repetitions so alternating strategies can be told apart in a timeline.
    """

    strategy: str
    guest: str
    """``emulated`` or ``qemu``."""
    stall: str
    """``none`` or ``<where>:<ms>``, e.g. ``dst:2000`` (a slow destination controller)."""
    activation: str
    """``rarp``, ``none`` or ``pre`` (migration/context.py ACTIVATIONS)."""
    load: str
    """``L0`` .. ``L3``: background control-plane load level."""
    vm: str
    src: str
    dst: str
    run_index: int
    probe_interval_ms: float
    probes_sent: int
    probes_lost: int
    blackout_ms: float
    """Longest interval in which the client received no reply, by arrival time (ms)."""
    loss_outage_ms: float
    """Probes lost x probe interval (ms): the loss-derived outage."""
    migration_ms: float
    ready_wait_ms: float
    """Time the strategy held the switchover back waiting for the destination."""
    detection_latency_ms: float | None = None
    sb_writes: int | None = None
    max_rtt_ms: float | None = None
    """Largest round-trip time of an answered probe (ms); None if none was answered."""
    duplicates: int = 0
    """Replies beyond the first for one probe (traffic cloned to two chassis)."""
    gate: str = "before-copy"
    """Where readiness gated the migration (migration/gates.py); files written before
    gates existed read as ``before-copy``, which is what every migration did then."""
    timeline: list[TimelineEvent] = field(default_factory=list)
    error: str | None = None
    """Set when the run failed; such a run is reported but not counted in statistics."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form measurements, e.g. ``silences``: ``[[start_ms, end_ms], ...]`` in ms since
    the migration started."""
    ovn: str = ""
    """OVN version the run ran on, as ovn-controller reported it (e.g. ``25.03.0``); ''
    in files written before version matrices (read as-is: the key is optional)."""
    fault: str = "none"
    """``--fault`` of the run (``KIND:MS``, e.g. ``sb-pause:2000``); ``none`` also for
    files written before faults existed (the key is optional)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["timeline"] = [e.to_dict() for e in self.timeline]
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunResult:
        _reject_unknown(cls, d)
        timeline = _field(d, "timeline", list, [])
        extra = _field(d, "extra", dict, {})
        return cls(
            strategy=_field(d, "strategy", str),
            guest=_field(d, "guest", str),
            stall=_field(d, "stall", str),
            activation=_field(d, "activation", str),
            load=_field(d, "load", str),
            vm=_field(d, "vm", str),
            src=_field(d, "src", str),
            dst=_field(d, "dst", str),
            run_index=_field(d, "run_index", int),
            probe_interval_ms=_field(d, "probe_interval_ms", float),
            probes_sent=_field(d, "probes_sent", int),
            probes_lost=_field(d, "probes_lost", int),
            blackout_ms=_field(d, "blackout_ms", float),
            loss_outage_ms=_field(d, "loss_outage_ms", float),
            migration_ms=_field(d, "migration_ms", float),
            ready_wait_ms=_field(d, "ready_wait_ms", float),
            detection_latency_ms=_optional(d, "detection_latency_ms", float),
            sb_writes=_optional(d, "sb_writes", int),
            max_rtt_ms=_optional(d, "max_rtt_ms", float),
            duplicates=_field(d, "duplicates", int, 0),
            gate=_field(d, "gate", str, "before-copy"),
            timeline=[TimelineEvent.from_dict(_mapping(e, "timeline event")) for e in timeline],
            error=_optional(d, "error", str),
            extra=dict(extra),
            ovn=_field(d, "ovn", str, ""),
            fault=_field(d, "fault", str, "none"),
        )


@dataclass(frozen=True, kw_only=True)
class BenchResult:
    """A whole bench: where it ran, how it was configured, and every run."""

    version: int = RESULT_FORMAT_VERSION
    started_at: str
    """ISO 8601 timestamp of the bench start (with offset, so benches sort and compare)."""
    environment: dict[str, str]
    params: dict[str, Any]
    runs: list[RunResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "started_at": self.started_at,
            "environment": dict(self.environment),
            "params": dict(self.params),
            "runs": [r.to_dict() for r in self.runs],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "bench result") -> BenchResult:
        """Parse a result; ``source`` (usually the file name) is named in every error."""
        try:
            version = d.get("version")
            if version != RESULT_FORMAT_VERSION:
                raise InputError(
                    f"{source} has result format version {version!r}, but this cutover reads "
                    f"version {RESULT_FORMAT_VERSION}; re-run the bench with this cutover, or "
                    f"read the file with the cutover release that wrote it"
                )
            _reject_unknown(cls, d)
            environment = _field(d, "environment", dict)
            return cls(
                version=version,
                started_at=_field(d, "started_at", str),
                environment={str(k): str(v) for k, v in environment.items()},
                params=dict(_field(d, "params", dict)),
                runs=[RunResult.from_dict(_mapping(r, "run")) for r in _field(d, "runs", list)],
            )
        except _Malformed as e:
            raise InputError(f"{source} is not a valid bench result: {e}") from None

    def save(self, path: Path) -> None:
        """Write atomically, so an interrupted bench never leaves a half-written file."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> BenchResult:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise InputError(f"no bench result at {path}; run 'cutover bench' first") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"bench result {path} is not JSON ({e})") from e
        if not isinstance(data, dict):
            raise InputError(f"bench result {path} is not a JSON object")
        return cls.from_dict(data, source=f"bench result {path}")


class _Malformed(InputError):
    """A field is missing or has the wrong type; BenchResult adds the file name to it."""


def _reject_unknown(cls: type[Any], d: Mapping[str, Any]) -> None:
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise _Malformed(f"{cls.__name__} has unknown keys {sorted(unknown)}")


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Malformed(f"a {what} is {type(value).__name__}, expected an object")
    return value


_MISSING: Any = object()


def _field(d: Mapping[str, Any], key: str, kind: type[_T], default: _T = _MISSING) -> _T:
    """``d[key]`` checked against ``kind``.

    Ints are accepted where floats are wanted because JSON writers drop the ``.0`` of
    whole numbers; booleans are refused everywhere because ``true`` as a count is a bug.
    """
    if key not in d:
        if default is _MISSING:
            raise _Malformed(f"missing key {key!r}")
        return default
    value = d[key]
    wanted: tuple[type, ...] = (int, float) if kind is float else (kind,)
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise _Malformed(f"{key!r} is {value!r}, expected {kind.__name__}")
    return kind(value)  # type: ignore[call-arg]


def _optional(d: Mapping[str, Any], key: str, kind: type[_T]) -> _T | None:
    if d.get(key) is None:
        return None
    return _field(d, key, kind)
