"""The logical topology in OVN and each port's first plug, done the way os-vif does it.

One logical switch holds an LSP per VM and one for the probe client (addresses and port
security, as Neutron would set them). Each port is then plugged on its home chassis by the
same code a migration plugs its destination with (:class:`cutover.chassis.local.
LocalChassis`, os-vif's ``create_tap`` steps). Not OVS ``type=tap``: that would make OVS
own the device, while here the guest process holds it. The TAPs live in the chassis
namespace and vanish with it, so they need no manifest entries.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from cutover.chassis.base import Vif
from cutover.chassis.local import LocalChassis
from cutover.errors import LabBuildError
from cutover.lab import central
from cutover.lab.topology import ChassisSpec, LabTopology, PortSpec
from cutover.site import ChassisEndpoint


def build_logical_switch(topo: LabTopology) -> None:
    """Switch and all LSPs in one NB transaction (one northd recompute, not one per port).

    Each port is pinned to its home chassis with ``requested-chassis``, as Neutron does for
    every bound port: no other chassis may claim it until a migration says so.
    """
    args = ["--", "ls-add", topo.switch]
    for p in topo.ports:
        addr = f"{p.mac} {p.ip}"
        args += ["--", "lsp-add", topo.switch, p.lsp,
                 "--", "lsp-set-addresses", p.lsp, addr,
                 "--", "lsp-set-port-security", p.lsp, addr,
                 "--", "lsp-set-options", p.lsp, f"requested-chassis={p.chassis}"]
    central.nbctl(topo, *args)


def add_lsp(topo: LabTopology, port: PortSpec, options: dict[str, str] | None = None) -> None:
    """One more LSP on the lab switch (tests and load generators use this)."""
    addr = f"{port.mac} {port.ip}"
    args = ["--", "lsp-add", topo.switch, port.lsp,
            "--", "lsp-set-addresses", port.lsp, addr,
            "--", "lsp-set-port-security", port.lsp, addr]
    if options:
        args += ["--", "lsp-set-options", port.lsp, *(f"{k}={v}" for k, v in options.items())]
    central.nbctl(topo, *args)


def plug_port(ch: ChassisSpec, port: PortSpec) -> None:
    """Plug ``port`` on ``ch`` in this process, with the migration's local plug (tests)."""
    endpoint = ChassisEndpoint(ch.name, f"unix:{ch.db_sock}", netns=ch.netns)
    LocalChassis(endpoint).plug(Vif(port.lsp, port.tap, port.mac, port.vm_uuid))


def plug_all(topo: LabTopology, endpoints: Mapping[str, ChassisEndpoint]) -> None:
    """Plug every port on its home chassis through that chassis' agent (os-vif), exactly
    as a migration plugs its destination: same TAP MTU, same Interface external_ids."""
    from cutover.chassis.agent_client import AgentChassis

    agents = {name: AgentChassis(e) for name, e in endpoints.items()}
    for p in topo.ports:
        agents[p.chassis].plug(Vif(p.lsp, p.tap, p.mac, p.vm_uuid))


def wait_hv_sync(topo: LabTopology) -> None:
    """Block until every chassis has processed the NB contents (``--wait=hv``)."""
    try:
        central.nbctl(topo, "--wait=hv", "sync")
    except LabBuildError as e:
        raise LabBuildError(
            f"not every chassis caught up with the NB within {topo.timeout_s:.0f} s "
            f"(ovn-nbctl --wait=hv sync): {e}"
        ) from e


def chassis_names(topo: LabTopology) -> dict[str, str]:
    """SB Chassis uuid -> name."""
    return {r["_uuid"]: r["name"] for r in central.sb_rows(topo, "Chassis", ["_uuid", "name"])}


def port_chassis(topo: LabTopology, lsp: str) -> str | None:
    """Name of the chassis the SB says ``lsp`` is bound to (None: unbound or no such port)."""
    return port_bindings(topo).get(lsp)


def port_bindings(topo: LabTopology) -> dict[str, str | None]:
    """Every SB Port_Binding's logical_port -> bound chassis name (None when unbound)."""
    names = chassis_names(topo)
    out: dict[str, str | None] = {}
    for r in central.sb_rows(topo, "Port_Binding", ["logical_port", "chassis"]):
        ch = r["chassis"]
        out[r["logical_port"]] = names.get(ch) if isinstance(ch, str) else None
    return out


def wait_bound(topo: LabTopology) -> None:
    """Every port bound to its home chassis; after ``--wait=hv`` this normally holds at once.

    Polled briefly anyway: the claim is written by ovn-controller in the same iteration that
    reports nb_cfg, but a check that cannot hang is cheaper than a flaky build.
    """
    want = {p.lsp: p.chassis for p in topo.ports}
    deadline = time.monotonic() + topo.timeout_s
    while True:
        got = port_bindings(topo)
        wrong = {lsp: got.get(lsp) for lsp, ch in want.items() if got.get(lsp) != ch}
        if not wrong:
            return
        if time.monotonic() >= deadline:
            detail = ", ".join(f"{k} on {v or 'no chassis'} (want {want[k]})"
                               for k, v in wrong.items())
            raise LabBuildError(f"ports not bound to their home chassis: {detail}")
        time.sleep(0.02)
