"""OVN Northbound: the few things a migration changes on a logical switch port.

Neutron ML2/OVN sets ``options:requested-chassis`` to "src,dst" while a port migrates
(``OVNClient._configure_requested_chassis_options``) and adds ``activation-strategy``;
after the move it is just "dst". Those writes, and the ``NB_Global.nb_cfg`` bump that
Neutron master uses as a chassis-wide barrier, are all this module does.
"""

from __future__ import annotations

import time
from typing import Any

from ovsdbapp.backend.ovs_idl import command as ovs_command
from ovsdbapp.schema.ovn_northbound import impl_idl as nb_impl

from cutover.errors import InputError, OvsdbError
from cutover.ovsdb.connection import DEFAULT_TIMEOUT_S, Database, open_api

NB_TABLES = ("NB_Global", "Logical_Switch", "Logical_Switch_Port")

REQUESTED_CHASSIS = "requested-chassis"
ACTIVATION_STRATEGY = "activation-strategy"
NB_CFG_UPDATE_OPTION = "enable_chassis_nb_cfg_update"
BUMP_MARK_KEY = "cutover-nb-cfg-bump"
"""``NB_Global.external_ids`` key written with each bump (see :class:`BumpNbCfgCommand`)."""


class BumpNbCfgCommand(ovs_command.BaseCommand):  # type: ignore[misc]
    """Increment ``NB_Global.nb_cfg`` in one transaction; ``result`` is the new value.

    python-ovs sends the increment as an OVSDB ``mutate nb_cfg += 1`` plus a ``select``
    of the result, but only when the transaction changes something else too (an
    increment alone is dropped as "unchanged"), so - like Neutron's
    ``CheckLivenessCommand`` - a timestamp is written to ``external_ids`` alongside.
    """

    def __init__(self, api: Any, mark: str) -> None:
        super().__init__(api)
        self.mark = mark

    def run_idl(self, txn: Any) -> None:
        rows = list(self.api.tables["NB_Global"].rows.values())
        if not rows:
            raise RuntimeError("NB_Global has no row; is ovn-northd's database initialised?")
        row = rows[0]
        row.setkey("external_ids", BUMP_MARK_KEY, self.mark)
        row.increment("nb_cfg")

    def post_commit(self, txn: Any) -> None:
        self.result = int(txn.get_increment_new_value())


class NbClient(Database):
    def __init__(self, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        api = open_api(nb_impl.OvnNbApiIdlImpl, remote, "OVN_Northbound", NB_TABLES, timeout_s)
        super().__init__(api, f"OVN_Northbound at {remote}")

    def _lsp(self, lsp: str) -> Any:
        for row in self.rows("Logical_Switch_Port"):
            if row.name == lsp:
                return row
        raise InputError(f"logical switch port {lsp!r} does not exist in {self.label}")

    def lsp_addresses(self, lsp: str) -> list[str]:
        """The LSP's ``addresses`` entries (``"MAC IP..."``, ``dynamic``, ``router``...)."""
        return [str(a) for a in self._lsp(lsp).addresses]

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

    def nb_global_options(self) -> dict[str, str]:
        rows = self.rows("NB_Global")
        return dict(rows[0].options) if rows else {}

    def nb_cfg(self) -> int:
        rows = self.rows("NB_Global")
        return int(rows[0].nb_cfg) if rows else 0

    def bump_nb_cfg(self) -> int:
        """``NB_Global.nb_cfg += 1`` (OVSDB mutate, one transaction); the new value."""
        (value,) = self.execute(BumpNbCfgCommand(self.api, f"{time.time():.6f}"))
        if not isinstance(value, int) or value <= 0:
            raise OvsdbError(f"{self.label}: nb_cfg bump returned {value!r}, not a new value")
        return value
