"""Pre-activation (``--activation pre``): cutover activates the destination itself, before
the switchover, instead of waiting for the VM's RARP to do it after.

With ``activation-strategy=rarp`` the destination's ovn-controller keeps the port blocked
(ingress drop, egress drop, RARP to the controller: physical.c,
``setup_activation_strategy``) until the VM's RARP reaches pinctrl, which writes
``Port_Binding.options:additional-chassis-activated=<chassis>`` (pinctrl.c,
``run_activated_ports``) and lifts the blocks in an engine run. Measured on a loaded
destination, that engine run takes 63-242 ms AFTER the switchover: all of it blackout.

Pre-activation keeps ``rarp`` while preparing (nothing is cloned to the destination while
waiting for readiness) and, once readiness holds, writes the same SB key pinctrl would -
the central side (Neutron's role) already writes the binding's NB side and reads the SB -
then waits, through the chassis seam (the destination's agent, or OpenFlow locally), until
none of the port's blocks is left on the destination's br-int. Only then may the guest
switch over. The engine run happens while the source still runs:

- ``converge-when-ready``: right before QEMU is allowed to converge (its last pass and
  stop-and-copy follow): cloned traffic queues in the destination TAP only for that;
- ``before-switchover``: after readiness, while the copy still runs (if the copy already
  ended, the source waits in ``pre-switchover``: the hold shows in the guest pause);
- ``before-copy``: before the copy starts, since QEMU's copy ends with the source stopped.

The write is kept: northd copies ``additional-chassis-activated`` into the options it
rewrites for as long as the port has requested additional chassis (northd.c, "Retain
activated chassis flags", OVN 22.09+), and drops it when the migration ends or is reverted;
the undo removes it at once anyway, so a rollback leaves no key behind even when northd is
slow or down.
"""

from __future__ import annotations

from typing import Any

from cutover.chassis.base import Vif
from cutover.errors import MigrationError, WaitTimeout
from cutover.migration.context import MigrationContext
from cutover.migration.steps import Step
from cutover.ovsdb.sb import ACTIVATED_OPTION


class PreActivate(Step):
    """Write the destination's activation, wait until its rarp blocks are gone.

    ``then``: a step run as soon as the blocks are gone, before this step cleans up its
    wait (a local wait stops its flow monitor and joins its validator then).
    ``converge-when-ready`` releases its held copy there: from the moment the blocks are
    gone until the source stops, cloned traffic queues in the destination TAP
    (docs/switchover.md, the TAP queue), so nothing that can wait may come first. (An
    agent's wait withdraws itself on the agent from a background thread, after it has
    returned the evidence: ``AgentChassis.withdraw_later``.)"""

    name = "pre-activate"

    def __init__(self, then: Step | None = None) -> None:
        self.then = then

    def do(self, ctx: MigrationContext) -> None:
        dst, lsp = ctx.dst.name, ctx.vm.lsp
        # armed before the write that lifts the blocks, so the change cannot be missed
        watch = ctx.chassis[dst].watch_unblocked(Vif.of(ctx.vm))
        try:
            try:
                ctx.timeline.mark("preactivation.write", f"additional-chassis-activated+={dst}")
                ctx.sb.activate_additional(lsp, dst)
                evidence = watch.wait(ctx.options.activation_timeout_s)
            except WaitTimeout as e:
                raise MigrationError(
                    f"{dst} did not lift the rarp blocks of {lsp} within "
                    f"{ctx.options.activation_timeout_s:g} s of its pre-activation ({e}); is "
                    "its ovn-controller busy or stalled? Not switching over") from e
            ctx.timeline.mark("preactivated", evidence.detail, at_ms=evidence.seen_ms)
            if self.then is not None:
                self.then.do(ctx)
        finally:
            watch.cancel()

    def changes(self, ctx: MigrationContext) -> dict[str, Any]:
        return {"sb_port_binding": ctx.vm.lsp, ACTIVATED_OPTION: f"+{ctx.dst.name}"}

    def undo(self, ctx: MigrationContext) -> None:
        if ctx.sb.deactivate_additional(ctx.vm.lsp, ctx.dst.name):
            ctx.timeline.mark("preactivation.cleared", ctx.dst.name)
