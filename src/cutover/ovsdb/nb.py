"""OVN Northbound: the few things a migration changes on a logical switch port.

Neutron ML2/OVN sets ``options:requested-chassis`` to "src,dst" while a port migrates
(``OVNClient._configure_requested_chassis_options``) and adds ``activation-strategy``;
after the move it is just "dst". Those writes, and the ``NB_Global.nb_cfg`` bump that
Neutron master uses as a chassis-wide barrier, are all this module does.
"""

from __future__ import annotations

from typing import Any

from ovsdbapp.schema.ovn_northbound import impl_idl as nb_impl

from cutover.errors import InputError
from cutover.ovsdb.connection import DEFAULT_TIMEOUT_S, Database, open_api

NB_TABLES = ("NB_Global", "Logical_Switch", "Logical_Switch_Port")

REQUESTED_CHASSIS = "requested-chassis"
ACTIVATION_STRATEGY = "activation-strategy"


class NbClient(Database):
    def __init__(self, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        api = open_api(nb_impl.OvnNbApiIdlImpl, remote, "OVN_Northbound", NB_TABLES, timeout_s)
        super().__init__(api, f"OVN_Northbound at {remote}")

    def _lsp(self, lsp: str) -> Any:
        for row in self.rows("Logical_Switch_Port"):
            if row.name == lsp:
                return row
        raise InputError(f"logical switch port {lsp!r} does not exist in {self.label}")

    def lsp_options(self, lsp: str) -> dict[str, str]:
        return dict(self._lsp(lsp).options)

    def requested_chassis(self, lsp: str) -> list[str]:
        value = self.lsp_options(lsp).get(REQUESTED_CHASSIS, "")
        return [c for c in value.split(",") if c]

    def set_requested_chassis(
        self, lsp: str, chassis: list[str], activation: str | None = None
    ) -> None:
        """Point the port at ``chassis`` (first = main) in one transaction.

        ``activation`` sets ``activation-strategy`` (e.g. "rarp"); None removes it, which
        is also what happens once a migration ends.
        """
        self._lsp(lsp)
        cmds: list[Any] = [
            self.api.db_set(
                "Logical_Switch_Port", lsp, ("options", {REQUESTED_CHASSIS: ",".join(chassis)})
            )
        ]
        if activation:
            cmds.append(
                self.api.db_set(
                    "Logical_Switch_Port", lsp, ("options", {ACTIVATION_STRATEGY: activation})
                )
            )
        else:
            cmds.append(
                self.api.db_remove(
                    "Logical_Switch_Port", lsp, "options", ACTIVATION_STRATEGY, if_exists=True
                )
            )
        self.execute(*cmds)
