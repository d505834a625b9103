"""The agent API's shapes (version 1), validated on the way in.

Every field is constrained as tightly as the node can accept it (a TAP name the kernel
takes, a MAC, an MTU a Geneve underlay carries, a bounded timeout), and unknown fields are
refused, so a malformed request gets a 4xx before anything on the node is touched. The
OpenAPI description the agent serves is generated from these models.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

TapName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$",
                               description="Linux interface name (<= 15 characters)")]
LogicalPort = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$",
                                   description="OVN logical switch port name")]
ChassisName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Mac = Annotated[str, Field(pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$",
                           description="lower-case MAC address")]
Uuid = Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                                    r"[0-9a-f]{12}$")]  # fmt: skip
_OCTET = r"(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])"
Ipv4 = Annotated[str, Field(pattern=rf"^{_OCTET}(\.{_OCTET}){{3}}$")]
Timeout = Annotated[float, Field(gt=0, le=3600, description="seconds")]


def _whole(value: object) -> object:
    """JSON Schema's ``integer`` includes ``3.0``; strict validation alone would refuse it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Key = Annotated[int, Field(ge=1, le=2**24)]


class Strict(BaseModel):
    """Unknown fields refused; no coercion (``0`` is not ``false``, ``"1"`` not ``1``), but
    an integer as JSON Schema means it: ``3.0`` is ``3`` (``3.5`` is refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _whole_numbers(cls, value: object, info: ValidationInfo) -> object:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and field.annotation is int:
            return _whole(value)
        return value


class VifRequest(Strict):
    """Plug a VM's VIF on this chassis (os-vif ``VIFOpenVSwitch`` with ``create_tap``)."""

    lsp: LogicalPort
    mac: Mac
    vm_uuid: Uuid
    mtu: Annotated[int, Field(ge=576, le=9216)] = 1442


class VifState(Strict):
    tap: TapName
    plugged: bool
    external_ids: dict[str, str] = {}
    """The OVS Interface's external_ids as os-vif wrote them (empty if not plugged)."""


class TapGateState(Strict):
    """A TAP's gate (docs/switchover.md, "The TAP gate"): ``closed`` while frames sent to
    the TAP are dropped; ``dropped``: how many the gate dropped (on DELETE: while it was
    closed; 0 when it was not)."""

    tap: TapName
    closed: bool
    dropped: Annotated[int, Field(ge=0)] = 0


class PortReadinessRequest(Strict):
    """Watch this chassis' flows for ``lsp`` and publish the verdict in the SB."""

    tap: TapName
    mac: Mac
    """The VIF's MAC: the port's L2 lookup flow for it must be on br-int too (a chassis
    can report ``ovn-installed`` for its first port on a switch before the switch's
    logical flows arrive)."""
    request_id: Uuid
    """Echoed in the published value, so that the central side never takes the verdict of
    an earlier request for the same port."""
    timeout_s: Timeout
    use_ovn_installed: bool = True


class PortOpenRequest(Strict):
    """Watch until ``lsp``'s rarp blocks are gone from this chassis' br-int (after
    cutover's pre-activation) and publish that in the SB."""

    tap: TapName
    mac: Mac
    request_id: Uuid
    timeout_s: Timeout


class PathReadinessRequest(Strict):
    """Watch whether this (peer) chassis tunnels ``lsp``'s traffic to ``dst``."""

    request_id: Uuid
    port_key: Key
    datapath_key: Key
    dst: ChassisName
    dst_ips: Annotated[list[Ipv4], Field(min_length=1, max_length=8)]
    timeout_s: Timeout


class PauseRequest(Strict):
    """Fault injection: freeze ovn-controller; with ``resume_after_ms`` the agent resumes
    it itself at that deadline (kept in its state file: a caller that dies, or an agent
    restart, cannot leave the controller paused for good)."""

    resume_after_ms: Annotated[float, Field(gt=0, le=600_000)] | None = None


class ForgetRequest(Strict):
    """Drop what this node holds for a migration of ``lsp``: readiness watches, published
    keys, a timed controller pause, and with ``tap`` that TAP and its OVS port."""

    lsp: LogicalPort
    tap: TapName | None = None


class ForgetResult(Strict):
    lsp: str
    cleaned: list[str]
    """What was removed (empty: nothing was left)."""


WatchStateName = Literal["waiting", "ready", "failed", "cancelled"]


class WatchState(Strict):
    lsp: str
    state: WatchStateName
    detail: str = ""


PollWait = Annotated[float, Field(gt=0, le=60, description="seconds")]
"""How long one verdict long poll may be held open."""


class VerdictQuery(BaseModel):
    """The verdict long poll's query string: unknown parameters refused like unknown
    fields of a body (a mistyped ``wait=5`` would otherwise hold the poll for the default
    20 s); values are parsed from their text (a query string has no JSON types)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: Uuid
    wait_s: PollWait = 20.0


class CancelQuery(BaseModel):
    """A cancel's query string: with ``request_id`` only that watch is cancelled (a late
    withdrawal of an earlier request must not stop a newer watch of the same port)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: Uuid | None = None


class VerdictState(Strict):
    """A watch's verdict as the SB key gets it (:mod:`cutover.chassis.published`):
    ``ready`` or ``failed`` with ``value`` set; ``waiting`` when the poll's ``wait_s``
    ended first (ask again); ``cancelled`` when the watch was cancelled meanwhile."""

    lsp: str
    request_id: str
    state: WatchStateName
    value: str = ""


class ControllerState(Strict):
    chassis: str
    alive: bool
    detail: str = ""


class Health(Strict):
    chassis: str
    api_version: int
    faults_enabled: bool


class ErrorBody(Strict):
    type: str
    message: str


class ErrorResponse(Strict):
    error: ErrorBody
