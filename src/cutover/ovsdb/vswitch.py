"""A chassis' local Open_vSwitch database: VIF ports the way os-vif writes them.

os-vif's ``create_ovs_vif_port`` adds a plain (system type) port to the integration
bridge with Interface ``external_ids`` ``iface-id`` (the logical port), ``iface-status``,
``attached-mac`` and ``vm-uuid``; ovn-controller claims the port from ``iface-id`` and,
once its flows are installed, writes ``ovn-installed``/``ovn-installed-ts`` back here.
"""

from __future__ import annotations

from typing import Any

from ovsdbapp.schema.open_vswitch import impl_idl as ovs_impl

from cutover.ovsdb.connection import DEFAULT_TIMEOUT_S, Database, open_api

OVS_TABLES = ("Open_vSwitch", "Bridge", "Port", "Interface")


def interface_ofport(row: Any) -> int | None:
    """An Interface's OpenFlow port number, None until vswitchd has assigned a valid one
    (the IDL gives an optional column as a 0- or 1-element list)."""
    value = row.ofport
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or int(value) <= 0:
        return None
    return int(value)


class VswitchClient(Database):
    def __init__(self, chassis: str, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        api = open_api(ovs_impl.OvsdbIdl, remote, "Open_vSwitch", OVS_TABLES, timeout_s)
        super().__init__(api, f"Open_vSwitch of {chassis} at {remote}")
        self.chassis = chassis
        self.remote = remote

    def system_id(self) -> str:
        """``external_ids:system-id``: the OVN chassis name this database belongs to."""
        return str(self.rows("Open_vSwitch")[0].external_ids.get("system-id", ""))

    def add_vif_port(
        self, bridge: str, name: str, iface_id: str, mac: str, vm_uuid: str
    ) -> None:
        external_ids = {
            "iface-id": iface_id,
            "iface-status": "active",
            "attached-mac": mac,
            "vm-uuid": vm_uuid,
        }
        self.execute(
            self.api.add_port(bridge, name, may_exist=True),
            self.api.db_set("Interface", name, ("external_ids", external_ids)),
        )

    def del_port(self, name: str) -> None:
        self.execute(self.api.del_port(name, if_exists=True))

    def interface(self, name: str) -> Any | None:
        for row in self.rows("Interface"):
            if row.name == name:
                return row
        return None

    def interface_external_ids(self, name: str) -> dict[str, str] | None:
        row = self.interface(name)
        return dict(row.external_ids) if row is not None else None

    def port_names(self, bridge: str) -> list[str]:
        for row in self.rows("Bridge"):
            if row.name == bridge:
                return sorted(str(p.name) for p in row.ports)
        return []
