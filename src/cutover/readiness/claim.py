"""``claim``: the destination appears in ``Port_Binding.additional_chassis``.

This is what Neutron waits for since 2026.1 (``PortBindingChassisUpdateEvent``). The
claim is written before the destination's flows are installed, so on a busy chassis it
says "will be ready soon", not "ready". Like Neutron, it watches no controller's liveness
(:meth:`vital` is empty): ``claim`` reproduces upstream, it does not improve on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from cutover.evidence import Evidence
from cutover.ovsdb.connection import Watch
from cutover.ovsdb.sb import SbClient, binding_state
from cutover.site import ChassisEndpoint, VmSpec


class ClaimReadiness:
    name = "claim"

    def __init__(self, sb: SbClient) -> None:
        self._sb = sb
        self._watch: Watch | None = None

    def arm(self, vm: VmSpec, src: ChassisEndpoint, dst: ChassisEndpoint) -> None:
        self._watch = self._sb.watch_binding(
            vm.lsp,
            lambda b: b.claimed_by(dst.name),
            f"chassis {dst.name} to claim the port as additional chassis",
        )

    def wait(self, timeout_s: float) -> Evidence:
        assert self._watch is not None, "arm() first"
        row, seen = self._watch.wait(timeout_s)
        return Evidence(self.name, seen, str(binding_state(row)))

    def disarm(self) -> None:
        if self._watch is not None:
            self._watch.cancel()

    def vital(self) -> Sequence[tuple[str, str]]:
        return ()

    def interrupt(self, cause: BaseException) -> None:
        """Nothing to interrupt: no controller is watched."""
