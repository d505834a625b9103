"""The binding controller: what Neutron ML2/OVN writes to the NB during a migration.

prepare  -> ``requested-chassis=src,dst`` (+ ``activation-strategy``): the destination may
            claim the port as an *additional* chassis while the source keeps it.
activate -> ``requested-chassis=dst``: the migration is over (Neutron does this when Nova
            activates the destination binding).
revert   -> ``requested-chassis=src``: a failed migration leaves no extra chassis.

The legacy strategy skips ``prepare`` and only ``activate``s, at switchover time.
"""

from __future__ import annotations

from cutover.ovsdb.nb import NbClient


class BindingController:
    def __init__(self, nb: NbClient) -> None:
        self._nb = nb

    def prepare(self, lsp: str, src: str, dst: str, activation: str | None) -> None:
        self._nb.set_requested_chassis(lsp, [src, dst], activation)

    def activate(self, lsp: str, dst: str) -> None:
        self._nb.set_requested_chassis(lsp, [dst], None)

    def revert(self, lsp: str, src: str) -> None:
        self._nb.set_requested_chassis(lsp, [src], None)
