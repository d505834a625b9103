"""``port-ready``: the destination's own flows for THIS port are on its br-int.

The check itself runs where the flows are - :mod:`cutover.chassis.port_watch` explains the
signal (claim + ``ovn-installed`` where the build sets it + an OpenFlow check of the port's
ingress and output flows, woken by a flow monitor) and the two version paths. Through the
chassis seam it runs in this process for a chassis reached locally, or in the destination's
agent, which publishes the result in the SB (``Chassis_Private(dst).external_ids``) where
this side waits for it with an OVSDB event: nothing here opens the chassis' databases.

The destination's ovn-controller must be alive too (:meth:`vital`): a dead one leaves its
flows on br-int, and a flow check alone would pass on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cutover.chassis.base import Chassis, Vif, Watch
from cutover.chassis.port_verdict import PATH_FLOWS_ONLY, PATH_INSTALLED
from cutover.evidence import Evidence
from cutover.site import ChassisEndpoint, VmSpec

__all__ = ["PATH_FLOWS_ONLY", "PATH_INSTALLED", "PortReadyReadiness"]


class PortReadyReadiness:
    name = "port-ready"

    def __init__(self, chassis: Mapping[str, Chassis], use_ovn_installed: bool = True) -> None:
        """``use_ovn_installed=False`` ignores ``ovn-installed`` as a build that never sets
        it for an additional chassis would (exercises the flows-only path on any build)."""
        self._chassis = chassis
        self._use_installed = use_ovn_installed
        self._watch: Watch | None = None
        self._dst = ""

    def arm(self, vm: VmSpec, src: ChassisEndpoint, dst: ChassisEndpoint) -> None:
        self.disarm()
        self._dst = dst.name
        self._watch = self._chassis[dst.name].watch_port(Vif.of(vm), self._use_installed)

    def wait(self, timeout_s: float) -> Evidence:
        assert self._watch is not None, "arm() first"
        try:
            return self._watch.wait(timeout_s)
        finally:
            self.disarm()

    def disarm(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()

    def vital(self) -> Sequence[tuple[str, str]]:
        """The destination: flows on its br-int mean nothing once its controller is gone."""
        return ((self._dst, "destination"),)

    def interrupt(self, cause: BaseException) -> None:
        if self._watch is not None:
            self._watch.interrupt(cause)
