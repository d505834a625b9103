"""The one exception tree of cutover.

Every error cutover raises derives from :class:`CutoverError`; third-party errors
(ovsdbapp, subprocess, sockets) are translated at the module boundary that meets them,
so callers never catch foreign types. Messages name the object and say what to do.
The CLI prints ``Type: message`` and exits non-zero.

::

    CutoverError
    +-- InputError                 bad request, nothing was changed
    |   +-- UnknownVm
    |   +-- UnknownChassis
    |   +-- InvalidMigration       e.g. destination == source
    +-- PrerequisiteError          not root, package or tool missing
    +-- LabError
    |   +-- LabAlreadyUp
    |   +-- LabNotUp
    |   +-- LabBuildError
    +-- OvsdbError                 a transaction or connection failed
    |   +-- OvsdbTlsError          ... an ssl: remote refused our certificate (or we its)
    +-- ChassisUnreachable         a chassis daemon's control socket did not answer
    |   +-- ControllerDown         ... its ovn-controller is not running: not ready
    |       +-- AgentDown          ... or its agent stopped answering: cannot tell
    +-- WaitTimeout                a wait ran out; carries the state it saw
    +-- GuestError                 a guest / prober process misbehaved
    +-- MeasurementError           a bench run cannot measure (no baseline, site != SB,
    |                              the VM never answered again): the run fails, loudly
    +-- PlugError                  a TAP or OVS port could not be created or removed
    +-- MigrationError             a migration step failed
        +-- MigrationAborted       ... and was rolled back (port on its source; says
                                   whether the VM's guest still runs there)
        +-- RollbackIncomplete     ... and some undo failed too (lists what is left)
        +-- SwitchedOverIncomplete ... after the switchover: the VM runs on the
        |                          destination, the clean-up is unfinished
        +-- RecoveryIncomplete     ``cutover recover`` could not finish a journaled
                                   migration (the journal keeps it open for a retry)
    +-- JournalError               the migration journal cannot be read or written
"""

from __future__ import annotations


class CutoverError(Exception):
    """Base of every error cutover raises on purpose."""


class InputError(CutoverError):
    """The request itself is wrong; nothing was changed."""


class UnknownVm(InputError):
    def __init__(self, vm: str, known: list[str]) -> None:
        super().__init__(
            f"VM {vm!r} is not in this site; known VMs: {', '.join(sorted(known)) or 'none'}"
        )
        self.vm = vm


class UnknownChassis(InputError):
    def __init__(self, chassis: str, known: list[str]) -> None:
        super().__init__(
            f"chassis {chassis!r} is not in this site; known chassis: "
            f"{', '.join(sorted(known)) or 'none'}"
        )
        self.chassis = chassis


class InvalidMigration(InputError):
    """E.g. the destination is the chassis the VM already runs on."""


class PrerequisiteError(CutoverError):
    """Something the machine must provide is missing (root, a package, a tool)."""


class LabError(CutoverError):
    """The lab could not be built, found or torn down."""


class LabAlreadyUp(LabError):
    pass


class LabNotUp(LabError):
    pass


class LabBuildError(LabError):
    pass


class OvsdbError(CutoverError):
    """An OVSDB connection or transaction failed (translated from ovsdbapp)."""


class OvsdbTlsError(OvsdbError):
    """A TLS session to an ``ssl:`` OVSDB remote failed: names the member and which side
    refused which certificate."""


class ChassisUnreachable(CutoverError):
    """A daemon of a chassis (ovn-controller, ovs-vswitchd) did not answer on its control
    socket."""


class ControllerDown(ChassisUnreachable):
    """The ovn-controller of a chassis a migration depends on is not running.

    Its flows stay on br-int (fail-mode secure) but nothing maintains them: a destination
    in that state is not ready, whatever its flows say."""

    def __init__(self, chassis: str, role: str, reason: str) -> None:
        super().__init__(
            f"ovn-controller of {role} chassis {chassis} is not running ({reason}): "
            f"start it again on {chassis} and retry the migration"
        )
        self.chassis = chassis
        self.role = role
        self.reason = reason


class AgentDown(ControllerDown):
    """The agent of a chassis a migration depends on stopped answering: whether that
    chassis' ovn-controller runs cannot be told, so the chassis is not ready either."""

    def __init__(self, chassis: str, role: str, reason: str) -> None:
        CutoverError.__init__(
            self,
            f"the agent of {role} chassis {chassis} stopped answering ({reason}), so "
            f"whether its ovn-controller runs cannot be told: start the agent again on "
            f"{chassis} and retry the migration",
        )
        self.chassis = chassis
        self.role = role
        self.reason = reason


class WaitTimeout(CutoverError):
    """A wait ran out of time. ``seen`` is the last state observed, for the operator."""

    def __init__(self, what: str, timeout_s: float, seen: str) -> None:
        super().__init__(f"timed out after {timeout_s:.1f} s waiting for {what}; last seen: {seen}")
        self.what = what
        self.timeout_s = timeout_s
        self.seen = seen


class GuestError(CutoverError):
    """A guest or prober process did not answer or died."""


class MeasurementError(CutoverError):
    """A bench run could not produce an honest number; the run is recorded as failed."""


class PlugError(CutoverError):
    """A VIF (TAP device and its OVS port) could not be plugged or unplugged."""


class MigrationError(CutoverError):
    """A migration step failed."""


class MigrationAborted(MigrationError):
    """The migration failed and was rolled back: the VM's port stays bound to its source.

    Whether the VM still *runs* there is a separate fact - a source guest that died is why
    many migrations abort - so the message states what the hypervisor reported after the
    rollback: ``guest_state`` (``running``, ``dead``, ``missing``, ``paused``, ``unknown``
    ...; None when it was not asked) and ``guest_detail``.
    """

    def __init__(
        self,
        vm: str,
        step: str,
        cause: BaseException,
        src: str | None = None,
        guest_state: str | None = None,
        guest_detail: str = "",
    ) -> None:
        where = f" on {src}" if src else " on its source"
        detail = f": {guest_detail}" if guest_detail else ""
        if guest_state is None:
            outcome = f"(the state of the VM's guest{where} was not checked)"
        elif guest_state == "running":
            outcome = f"(the VM still runs{where}, its port bound there)"
        elif guest_state == "unknown":
            outcome = (
                f"whether the VM's guest{where} still runs is unknown{detail}; its port stays "
                f"bound to {src or 'its source'}: check the guest there"
            )
        else:
            outcome = (
                f"the VM's guest{where} is NOT running ({guest_state}{detail}); its port stays "
                f"bound to {src or 'its source'}: restart the guest there (in the lab: "
                f"'cutover lab restart-guests') before migrating it again"
            )
        super().__init__(
            f"migration of {vm!r} aborted in step {step!r} and rolled back; {outcome}. "
            f"Cause: {type(cause).__name__}: {cause}"
        )
        self.vm = vm
        self.step = step
        self.cause = cause
        self.src = src
        self.guest_state = guest_state
        self.guest_detail = guest_detail

    @property
    def guest_running(self) -> bool | None:
        """True/False from the hypervisor after the rollback; None if it was not asked."""
        return None if self.guest_state is None else self.guest_state == "running"


class RollbackIncomplete(MigrationError):
    """The migration failed and some undo failed too: ``leftovers`` says what to clean."""

    def __init__(self, vm: str, step: str, cause: BaseException, leftovers: list[str]) -> None:
        super().__init__(
            f"migration of {vm!r} failed in step {step!r} ({type(cause).__name__}: {cause}) "
            f"and rollback left: {'; '.join(leftovers)}. Run 'cutover recover {vm}' once "
            f"the cause is fixed (the journal keeps the migration open)"
        )
        self.vm = vm
        self.step = step
        self.cause = cause
        self.leftovers = leftovers


class SwitchedOverIncomplete(MigrationError):
    """A step after the switchover failed: the VM runs on ``dst``; nothing is rolled back."""

    def __init__(self, vm: str, src: str, dst: str, step: str, cause: BaseException) -> None:
        super().__init__(
            f"{vm} switched over to {dst} but step {step!r} failed afterwards "
            f"({type(cause).__name__}: {cause}); the VM runs on {dst}: run "
            f"'cutover recover {vm}' to finish the activation and the clean-up of {src}"
        )
        self.vm = vm
        self.dst = dst
        self.step = step
        self.cause = cause


class RecoveryIncomplete(MigrationError):
    """``cutover recover`` could not finish a journaled migration; it stays open."""

    def __init__(self, vm: str, direction: str, leftovers: list[str]) -> None:
        super().__init__(
            f"recovery of {vm!r} ({direction}) left: {'; '.join(leftovers)}. The journal "
            f"keeps the migration open: fix the cause and run 'cutover recover {vm}' again"
        )
        self.vm = vm
        self.direction = direction
        self.leftovers = leftovers


class JournalError(CutoverError):
    """The migration journal (SQLite) cannot be opened, read or written."""
