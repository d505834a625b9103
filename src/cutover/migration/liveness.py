"""The ovn-controllers a migration depends on, watched from the arming to the switchover.

A readiness strategy names them (``ReadinessCheck.vital()``: the destination, and for
``path-ready`` every peer); this keeps one controller watch per chassis through the chassis
seam, reports a death once (the strategy's wait is interrupted), and confirms them all with
a fresh round trip right before the point of no return.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from cutover.chassis.base import Chassis, ControllerWatch, DeathCallback
from cutover.errors import ControllerDown


class Liveness:
    """Watch ``vital`` = ``(chassis, role)`` pairs; ControllerDown at once if one is dead."""

    def __init__(self, chassis: Mapping[str, Chassis], vital: Sequence[tuple[str, str]],
                 on_death: DeathCallback) -> None:
        self._chassis = chassis
        self._vital = list(dict.fromkeys(vital))
        self._dead: list[ControllerDown] = []
        self._lock = threading.Lock()
        self._on_death = on_death
        self._watches: list[ControllerWatch] = []
        try:
            for name, role in self._vital:
                self._watches.append(chassis[name].watch_controller(role, self._died))
        except BaseException:
            self.stop()
            raise

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._vital]

    def _died(self, down: ControllerDown) -> None:
        with self._lock:
            if any(d.chassis == down.chassis for d in self._dead):
                return
            self._dead.append(down)
        self._on_death(down)

    def dead(self) -> list[ControllerDown]:
        with self._lock:
            return list(self._dead)

    def confirm(self) -> None:
        """ControllerDown unless every watched controller answers right now."""
        for down in self.dead():
            raise down
        for name, role in self._vital:
            try:
                self._chassis[name].confirm_controller(role)
            except ControllerDown as e:
                self._died(e)
                raise

    def stop(self) -> None:
        watches, self._watches = self._watches, []
        for w in watches:
            w.stop()
