"""OVN Southbound: what the chassis report about a port binding, and waits on it.

``Port_Binding.additional_chassis`` is written by the destination's ovn-controller when it
*claims* the port (controller/binding.c) - before its flows are installed. OpenStack
2026.1 waits for exactly that claim; it is the ``claim`` readiness signal here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ovsdbapp.schema.ovn_southbound import impl_idl as sb_impl

from cutover.errors import OvsdbError
from cutover.ovsdb.connection import DEFAULT_TIMEOUT_S, Database, Watch, open_api

SB_TABLES = (
    "SB_Global", "Chassis", "Chassis_Private", "Encap", "Port_Binding", "Datapath_Binding",
)

ACTIVATED_OPTION = "additional-chassis-activated"


@dataclass(frozen=True)
class BindingState:
    """A Port_Binding row reduced to chassis names: what an operator wants to see."""

    lsp: str
    chassis: str | None
    additional: tuple[str, ...]
    requested: str | None
    requested_additional: tuple[str, ...]
    up: bool | None
    activated: tuple[str, ...]
    activation_strategy: str = ""
    """``options:activation-strategy`` (``rarp``, or '' for none)."""

    def awaits_activation(self, chassis: str) -> bool:
        """``chassis`` is (requested as, or already) an additional chassis of the port whose
        ``rarp`` activation has not happened yet: OVN must keep the port blocked there until
        the VM's RARP. The request counts too: northd writes it before the chassis claims,
        and the claim may reach us after the chassis' first flows."""
        additional = chassis in self.additional or chassis in self.requested_additional
        return (self.activation_strategy == "rarp" and additional
                and chassis not in self.activated)

    def claimed_by(self, chassis: str) -> bool:
        """``chassis`` holds the port, as the main or as an additional chassis."""
        return chassis in self.additional or self.chassis == chassis

    def __str__(self) -> str:
        return (
            f"Port_Binding {self.lsp}: chassis={self.chassis or '[]'} "
            f"additional_chassis={list(self.additional)} requested_chassis={self.requested} "
            f"requested_additional_chassis={list(self.requested_additional)} up={self.up} "
            f"{ACTIVATED_OPTION}={','.join(self.activated) or '-'}"
        )


def _names(refs: Any) -> tuple[str, ...]:
    return tuple(sorted(str(r.name) for r in (refs or [])))


def _split(value: str) -> list[str]:
    return [a for a in value.split(",") if a]


def binding_state(row: Any) -> BindingState:
    """Reduce a (live or frozen) Port_Binding row; reference columns resolve to names."""
    chassis = _names(row.chassis)
    requested = _names(row.requested_chassis)
    up = list(row.up) if isinstance(row.up, list) else [row.up]
    activated = row.options.get(ACTIVATED_OPTION, "")
    return BindingState(
        lsp=str(row.logical_port),
        chassis=chassis[0] if chassis else None,
        additional=_names(row.additional_chassis),
        requested=requested[0] if requested else None,
        requested_additional=_names(row.requested_additional_chassis),
        up=bool(up[0]) if up else None,
        activated=tuple(a for a in activated.split(",") if a),
        activation_strategy=str(row.options.get("activation-strategy", "")),
    )


class SbClient(Database):
    def __init__(self, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        api = open_api(sb_impl.OvnSbApiIdlImpl, remote, "OVN_Southbound", SB_TABLES, timeout_s)
        super().__init__(api, f"OVN_Southbound at {remote}")

    def binding(self, lsp: str) -> BindingState | None:
        for row in self.rows("Port_Binding"):
            if row.logical_port == lsp:
                return binding_state(row)
        return None

    def describe_binding(self, lsp: str) -> str:
        state = self.binding(lsp)
        return str(state) if state else f"no Port_Binding for {lsp}"

    def release_additional(self, lsp: str, chassis: str) -> bool:
        """Remove ``chassis`` from the port's ``additional_chassis`` (and its
        ``additional_encap``) in one transaction; False if it held no such claim.

        Only for a chassis whose ovn-controller is dead: a live controller owns its claims
        and releases them itself once ``requested-chassis`` no longer names it. A dead one
        never does, so without this the claim would stay until it is started again."""
        row = next((r for r in self.rows("Port_Binding") if r.logical_port == lsp), None)
        ch = next((c for c in self.rows("Chassis") if c.name == chassis), None)
        if row is None or ch is None or ch.uuid not in {c.uuid for c in row.additional_chassis}:
            return False
        cmds: list[Any] = [
            self.api.db_remove("Port_Binding", row.uuid, "additional_chassis", ch.uuid)
        ]
        for encap in getattr(row, "additional_encap", None) or []:
            if encap.chassis_name == chassis:
                cmds.append(
                    self.api.db_remove("Port_Binding", row.uuid, "additional_encap", encap.uuid)
                )
        self.execute(*cmds)
        return True

    def activate_additional(self, lsp: str, chassis: str) -> bool:
        """Write what ovn-controller's pinctrl writes when the VM's RARP reaches it
        (controller/pinctrl.c, ``run_activated_ports``): ``chassis`` appended to
        ``Port_Binding.options:additional-chassis-activated`` (comma-separated). northd
        keeps the key while the port has requested additional chassis and drops it when
        that ends (northd.c "Retain activated chassis flags", OVN 22.09+). False if it
        was already there; MigrationError-free: OvsdbError when there is no binding."""
        row = self._binding_row(lsp)
        activated = _split(row.options.get(ACTIVATED_OPTION, ""))
        if chassis in activated:
            return False
        value = ",".join([*activated, chassis])
        self.execute(self.api.db_set("Port_Binding", row.uuid,
                                     ("options", {ACTIVATED_OPTION: value})))  # fmt: skip
        return True

    def deactivate_additional(self, lsp: str, chassis: str) -> bool:
        """Undo :meth:`activate_additional`: remove ``chassis`` from the option (the key
        itself when it was the only one); False if it was not there or the port is gone."""
        row = next((r for r in self.rows("Port_Binding") if r.logical_port == lsp), None)
        if row is None:
            return False
        activated = _split(row.options.get(ACTIVATED_OPTION, ""))
        if chassis not in activated:
            return False
        rest = [a for a in activated if a != chassis]
        if rest:
            cmd = self.api.db_set("Port_Binding", row.uuid,
                                  ("options", {ACTIVATED_OPTION: ",".join(rest)}))
        else:
            cmd = self.api.db_remove("Port_Binding", row.uuid, "options", ACTIVATED_OPTION,
                                     if_exists=True)  # fmt: skip
        self.execute(cmd)
        return True

    def _binding_row(self, lsp: str) -> Any:
        row = next((r for r in self.rows("Port_Binding") if r.logical_port == lsp), None)
        if row is None:
            raise OvsdbError(f"no Port_Binding for {lsp} in {self.label}; is the port in the NB?")
        return row

    def publish(self, chassis: str, key: str, value: str) -> None:
        """Set ``Chassis_Private(chassis).external_ids:key`` (one write on a row of the
        chassis' own: the pattern OVN's metadata agents use on Chassis_Private)."""
        self.execute(self.api.db_set("Chassis_Private", chassis, ("external_ids", {key: value})))

    def unpublish(self, chassis: str, key: str) -> None:
        """Remove ``Chassis_Private(chassis).external_ids:key`` if present."""
        row = next((r for r in self.rows("Chassis_Private") if r.name == chassis), None)
        if row is None or key not in row.external_ids:
            return
        self.execute(self.api.db_remove("Chassis_Private", chassis, "external_ids", key,
                                        if_exists=True))  # fmt: skip

    def published(self, chassis: str, key: str) -> str | None:
        row = next((r for r in self.rows("Chassis_Private") if r.name == chassis), None)
        return None if row is None else row.external_ids.get(key)

    def watch_published(self, chassis: str, key: str, predicate: Callable[[str], bool],
                        what: str) -> Watch:
        """Event-driven wait until ``Chassis_Private(chassis).external_ids:key`` satisfies
        ``predicate`` (register before the request that makes the agent publish it)."""

        def match(row: Any) -> bool:
            value = row.external_ids.get(key)
            return bool(row.name == chassis and value is not None and predicate(value))

        return self.register("Chassis_Private", match, f"{what} (Chassis_Private {chassis} "
                             f"{key})", lambda: f"{key}={self.published(chassis, key)}")

    def chassis_names(self) -> list[str]:
        return sorted(str(r.name) for r in self.rows("Chassis"))

    def watch_binding(
        self, lsp: str, predicate: Callable[[BindingState], bool], what: str
    ) -> Watch:
        """Register an event-driven wait until the binding of ``lsp`` satisfies
        ``predicate`` (call before the transaction that should cause it)."""

        def match(row: Any) -> bool:
            return bool(row.logical_port == lsp and predicate(binding_state(row)))

        return self.register(
            "Port_Binding", match, f"{what} ({lsp})", lambda: self.describe_binding(lsp)
        )
