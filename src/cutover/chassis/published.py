"""Readiness a chassis publishes in the SB, and how the central side reads it back.

Where: ``Chassis_Private(<chassis>).external_ids``, key ``cutover-port-ready:<lsp>`` (the
destination's flows for the port) or ``cutover-path-ready:<lsp>`` (a peer tunnels the
port's traffic to the destination). Why there: it is a row of the chassis' own, which
the central side already monitors (Neutron's ML2/OVN driver reads ``Chassis_Private`` for
agent liveness; OVN's metadata agents write their own keys on it), so the wait is one SB
``RowEvent`` and needs no connection to the chassis at all. One write when the verdict is
known, one removal when the migration ends or rolls back.

The value is a small JSON object: ``{"id": <request id>, "state": "ready", "check": ...,
"seen_ms": ..., "committed_ms": ..., "detail": ..., "marks": [[name, ms, detail], ...]}``
or ``{"id": ..., "state": "failed", "error": "Type: message"}``. The request id makes an
old verdict for the same port (a crashed earlier attempt) unmistakable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cutover.evidence import Evidence

KEY_PREFIX = "cutover"


def port_ready_key(lsp: str) -> str:
    return f"{KEY_PREFIX}-port-ready:{lsp}"


def port_open_key(lsp: str) -> str:
    """Where an agent publishes that the rarp blocks of ``lsp`` are gone from its br-int
    (pre-activation, :mod:`cutover.migration.preactivation`)."""
    return f"{KEY_PREFIX}-port-open:{lsp}"


def path_ready_key(lsp: str) -> str:
    return f"{KEY_PREFIX}-path-ready:{lsp}"


@dataclass(frozen=True)
class Verdict:
    request_id: str
    evidence: Evidence | None
    """Set when ready."""
    error: str | None = None
    """Set when the chassis' own wait failed (``Type: message``)."""


def encode_ready(request_id: str, evidence: Evidence) -> str:
    return json.dumps({
        "id": request_id, "state": "ready", "check": evidence.check,
        "seen_ms": evidence.seen_ms, "committed_ms": evidence.committed_ms,
        "detail": evidence.detail, "marks": [list(m) for m in evidence.marks],
    }, separators=(",", ":"))  # fmt: skip


def encode_failed(request_id: str, error: BaseException) -> str:
    return json.dumps({"id": request_id, "state": "failed",
                       "error": f"{type(error).__name__}: {error}"}, separators=(",", ":"))


def decode(value: str) -> Verdict | None:
    """The verdict in ``value``; None if it is not one (never raises: the SB is shared)."""
    try:
        d: Any = json.loads(value)
        request_id = str(d["id"])
        if d["state"] == "failed":
            return Verdict(request_id, None, str(d["error"]))
        if d["state"] != "ready":
            return None
        committed = d.get("committed_ms")
        return Verdict(request_id, Evidence(
            check=str(d["check"]), seen_ms=float(d["seen_ms"]), detail=str(d["detail"]),
            committed_ms=None if committed is None else float(committed),
            marks=tuple((str(n), float(t), str(x)) for n, t, x in d.get("marks", [])),
        ))  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None
