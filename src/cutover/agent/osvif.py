"""Plugging with the real os-vif library, as nova-compute does on a compute node.

A VIF is a ``VIFOpenVSwitch`` with ``VIFPortProfileOpenVSwitch(create_port=True,
create_tap=True, datapath_type=...)`` (os-vif >= 4.3): os-vif's OVS plugin adds the port to
the integration bridge with ``iface-id``, ``iface-status``, ``attached-mac`` and ``vm-uuid``
and creates the persistent TAP (privileged, through oslo.privsep) with the VM's MAC and
MTU and IPv6 off. Unplug removes both.

Set-up that matters (``../shared/reference/os-vif-notes.md``, checked on this machine kind):

- the configuration must be loaded BEFORE ``os_vif.initialize()``: the OVS plugin reads
  ``[os_vif_ovs] ovsdb_connection`` once, at load; later overrides are silently ignored;
- privsep without sudo: ``[vif_plug_ovs_privileged] helper_command = <venv>/bin/privsep-helper
  --config-file <the same file>`` spawns the privileged daemon, which inherits the agent's
  network namespace (the chassis').

os-vif pulls in eventlet and oslo.* (56 packages): this module is imported only by the agent
process (:mod:`cutover.agent.service`), never by the orchestrator or the CLI. Its errors are
mapped to :class:`~cutover.errors.PlugError` here.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any

from cutover.chassis.base import Vif
from cutover.errors import PlugError, PrerequisiteError

_INIT_LOCK = threading.Lock()
_initialized: Path | None = None


def _privsep_helper() -> str:
    helper = Path(sys.executable).parent / "privsep-helper"
    if not helper.exists():
        raise PrerequisiteError(f"{helper} is missing: install os-vif into this environment")
    return str(helper)


def initialize(conf_file: Path, ovs_remote: str, timeout_s: int = 30) -> None:
    """Write the os-vif configuration and load the plugins (once per process)."""
    global _initialized
    with _INIT_LOCK:
        if _initialized is not None:
            if _initialized != conf_file:
                raise PlugError(f"os-vif is already initialised with {_initialized}")
            return
        conf_file.write_text(
            "[os_vif_ovs]\n"
            f"ovsdb_connection = {ovs_remote}\n"
            f"ovs_vsctl_timeout = {timeout_s}\n"
            "[vif_plug_ovs_privileged]\n"
            f"helper_command = {_privsep_helper()} --config-file {conf_file}\n"
        )
        try:
            import os_vif
            from oslo_config import cfg
        except ImportError as e:
            raise PrerequisiteError(f"os-vif is not installed ({e}): pip install os-vif") from e
        cfg.CONF(["--config-file", str(conf_file)], project="cutover-agent")
        os_vif.initialize()
        _initialized = conf_file


class OsVifPlugger:
    """Plug and unplug :class:`~cutover.chassis.base.Vif` with os-vif's OVS plugin."""

    def __init__(self, conf_file: Path, ovs_remote: str, bridge: str = "br-int",
                 datapath_type: str = "netdev") -> None:
        initialize(conf_file, ovs_remote)
        self.bridge = bridge
        self.datapath_type = datapath_type

    def _objects(self, vif: Vif) -> tuple[Any, Any]:
        from os_vif.objects import instance_info, network
        from os_vif.objects import vif as osv

        port_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"cutover:port:{vif.lsp}"))
        profile = osv.VIFPortProfileOpenVSwitch(
            interface_id=vif.lsp,  # iface-id = the logical port (Neutron: the port UUID)
            create_port=True, create_tap=True, datapath_type=self.datapath_type,
        )
        net = network.Network(id=str(uuid.uuid5(uuid.NAMESPACE_URL, "cutover:net")),
                              bridge=self.bridge, mtu=vif.mtu)  # fmt: skip
        obj = osv.VIFOpenVSwitch(id=port_id, vif_name=vif.tap, bridge_name=self.bridge,
                                 network=net, plugin="ovs", port_profile=profile,
                                 **({"address": vif.mac} if vif.mac else {}))  # fmt: skip
        instance = instance_info.InstanceInfo(uuid=vif.vm_uuid or port_id,
                                              name=f"instance-{vif.vm_uuid or port_id}")
        return obj, instance

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop os-vif's privsep daemon and wait until it is gone.

        The daemon is a grandchild (the helper forks it and exits), so it is not ours to
        wait for; it exits when its channel closes, a moment after we do - too late for a
        lab that checks its namespaces right after stopping the agent. It is found by the
        configuration file only this agent uses, and SIGKILLed if it lingers."""
        from vif_plug_ovs import privsep

        marker = str(_initialized) if _initialized is not None else None
        pids = _processes_naming(marker) if marker else []
        privsep.vif_plug.stop()
        for pid in pids:
            if not _wait_gone(pid, timeout_s):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def plug(self, vif: Vif) -> None:
        self._call("plug", vif)

    def unplug(self, vif: Vif) -> None:
        self._call("unplug", vif)

    def _call(self, what: str, vif: Vif) -> None:
        import os_vif

        with warnings.catch_warnings():
            # interface_id should be a Neutron port UUID; the lab's LSPs have names
            warnings.simplefilter("ignore", FutureWarning)
            obj, instance = self._objects(vif)
            try:
                getattr(os_vif, what)(obj, instance)
            except Exception as e:  # os-vif raises its own tree and oslo/ovsdbapp ones
                raise PlugError(f"os-vif could not {what} {vif.tap} ({vif.lsp}): "
                                f"{type(e).__name__}: {e}") from e


def _processes_naming(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (our own config file)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd:
            found.append(int(entry))
    return found


def _wait_gone(pid: int, timeout_s: float) -> bool:
    """Block until ``pid`` exits (a pidfd becomes readable: an event, not a poll loop)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(timeout_s * 1000))
    finally:
        os.close(fd)
