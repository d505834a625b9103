"""What a wait saw, and when: the result every readiness wait returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Evidence:
    """What a readiness check saw, and when (wall ms)."""

    check: str
    seen_ms: float
    detail: str
    committed_ms: float | None = None
    """When the row change behind the evidence was written, if the row says so (wall ms);
    ``seen_ms - committed_ms`` is the detection latency. None when the row has no
    timestamp (e.g. ``Port_Binding.additional_chassis`` for ``claim``)."""
    marks: tuple[tuple[str, float, str], ...] = ()
    """Intermediate (event, wall ms, detail) for the migration timeline, e.g. the
    ``nb_cfg`` bump of ``nb-cfg``."""
