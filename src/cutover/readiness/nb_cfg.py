"""``nb-cfg``: Neutron master's ``WaitForChassisNbCfgEvent`` (bug 2158253), reproduced.

After the destination has claimed the port (:class:`ClaimReadiness`, composed, not
copied), bump ``NB_Global.nb_cfg`` and wait - event-driven, the watch registered before
the bump transaction - until ``Chassis_Private(name=dst).nb_cfg >= bumped``. ovn-northd
copies the bump to ``SB_Global.nb_cfg``; each ovn-controller writes it back to its own
``Chassis_Private`` row once it has processed that SB state and installed its flows.

Known costs, which the bench measures (``sb_writes``): the barrier is chassis-wide, not
per port, and every bump makes *every* chassis write its ``Chassis_Private`` row - one
cluster-wide SB write wave per migrating port. With
``NB_Global.options:enable_chassis_nb_cfg_update=false`` (OVN >= 25.09) the chassis stop
writing ``nb_cfg`` and the wait would never end, so that configuration is refused up front.

Detection latency: ovn-controller stamps ``Chassis_Private.nb_cfg_timestamp`` (its wall
clock, ms) in the same transaction as ``nb_cfg``, so ``seen - nb_cfg_timestamp`` is
reported as :attr:`Evidence.committed_ms`. In the lab every chassis shares the host clock;
across real hosts it is only as good as their clock sync.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from cutover.errors import InvalidMigration, WaitTimeout
from cutover.evidence import Evidence
from cutover.ovsdb.connection import Watch, now_ms
from cutover.ovsdb.nb import NB_CFG_UPDATE_OPTION, NbClient
from cutover.ovsdb.sb import SbClient
from cutover.readiness.claim import ClaimReadiness
from cutover.site import ChassisEndpoint, VmSpec


def check_nb_cfg_supported(nb: NbClient) -> None:
    """Refuse a configuration in which chassis never report ``nb_cfg``."""
    value = nb.nb_global_options().get(NB_CFG_UPDATE_OPTION)
    if value is not None and value.lower() == "false":
        raise InvalidMigration(
            f"strategy nb-cfg waits for Chassis_Private.nb_cfg, but NB_Global.options:"
            f"{NB_CFG_UPDATE_OPTION}=false stops the chassis from writing it, so the wait "
            f"would never end; choose another strategy or remove that option"
        )


def describe_chassis_private(sb: SbClient, chassis: str) -> str:
    for row in sb.rows("Chassis_Private"):
        if row.name == chassis:
            return _describe_row(row)
    return f"no Chassis_Private row for {chassis}"


def _describe_row(row: Any) -> str:
    stamp = getattr(row, "nb_cfg_timestamp", None)
    return f"Chassis_Private {row.name}: nb_cfg={row.nb_cfg} nb_cfg_timestamp={stamp}"


def _timestamp_ms(row: Any) -> float | None:
    stamp = getattr(row, "nb_cfg_timestamp", None)
    if isinstance(stamp, list):  # optional column in older schemas
        stamp = stamp[0] if stamp else None
    if not isinstance(stamp, int) or stamp <= 0:
        return None
    return float(stamp)


class NbCfgReadiness:
    name = "nb-cfg"

    def __init__(self, nb: NbClient, sb: SbClient) -> None:
        check_nb_cfg_supported(nb)
        self._nb = nb
        self._sb = sb
        self._claim = ClaimReadiness(sb)
        self._dst: str | None = None
        self._cfg_watch: Watch | None = None

    def arm(self, vm: VmSpec, src: ChassisEndpoint, dst: ChassisEndpoint) -> None:
        self._dst = dst.name
        self._claim.arm(vm, src, dst)

    def wait(self, timeout_s: float) -> Evidence:
        assert self._dst is not None, "arm() first"
        dst = self._dst
        deadline = time.monotonic() + timeout_s
        try:
            claim = self._claim.wait(timeout_s)
        except WaitTimeout as e:
            raise WaitTimeout(
                f"chassis {dst} to claim the port, then to report nb_cfg",
                timeout_s,
                f"{e.seen}; {describe_chassis_private(self._sb, dst)}",
            ) from e
        marks: list[tuple[str, float, str]] = [
            (f"{self._claim.name}.seen", claim.seen_ms, claim.detail)
        ]
        target: list[int] = []

        def caught_up(row: Any) -> bool:
            return bool(target and row.name == dst and int(row.nb_cfg) >= target[0])

        # registered BEFORE the bump transaction, re-checked once the target is known
        self._cfg_watch = self._sb.register(
            "Chassis_Private",
            caught_up,
            f"Chassis_Private {dst} to reach the bumped nb_cfg",
            lambda: describe_chassis_private(self._sb, dst),
        )
        try:
            bumped = self._nb.bump_nb_cfg()
            marks.append(("nb_cfg.bumped", now_ms(), f"NB_Global.nb_cfg={bumped}"))
            target.append(bumped)
            self._cfg_watch.recheck(self._sb.rows("Chassis_Private"))
            remaining = max(0.0, deadline - time.monotonic())
            try:
                row, seen = self._cfg_watch.wait(remaining)
            except WaitTimeout as e:
                raise WaitTimeout(
                    f"Chassis_Private {dst} to reach nb_cfg >= {bumped}", timeout_s, e.seen
                ) from e
        finally:
            self._cfg_watch.cancel()
        return Evidence(
            self.name,
            seen,
            f"{_describe_row(row)} (bumped to {bumped}; after {claim.detail})",
            committed_ms=_timestamp_ms(row),
            marks=tuple(marks),
        )

    def disarm(self) -> None:
        self._claim.disarm()
        if self._cfg_watch is not None:
            self._cfg_watch.cancel()

    def vital(self) -> Sequence[tuple[str, str]]:
        """None, as in Neutron master: ``nb-cfg`` reproduces upstream."""
        return ()

    def interrupt(self, cause: BaseException) -> None:
        """Nothing to interrupt: no controller is watched."""
