"""A frozen description of an OVN site: what a real deployment's config file would give.

The migration core only ever sees a :class:`Site`: NB/SB remotes, the chassis with the
way to reach each one's local Open_vSwitch database, and the VM ports. The lab is just
one producer of a Site (it writes ``site.json``); a real cloud would write the same
file by hand. Nothing here touches the system.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cutover.errors import InputError, UnknownChassis, UnknownVm

SITE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SslFiles:
    """PEM files of one OVSDB client (or server): its key, its certificate, the CA that
    signed the peers' certificates (``ovs-pki``'s ``cacert.pem``)."""

    private_key: str
    certificate: str
    ca_cert: str

    def check(self, where: str) -> None:
        """InputError naming ``where`` (e.g. ``[ovsdb.ssl]``) if a file cannot be read."""
        for name, path in (("private_key", self.private_key),
                           ("certificate", self.certificate), ("ca_cert", self.ca_cert)):
            p = Path(path)
            if not p.is_absolute():
                raise InputError(f"{where} {name} = {path!r}: give an absolute path")
            try:
                with p.open("rb") as f:
                    head = f.read(4096)
            except OSError as e:
                raise InputError(f"{where} {name} = {path!r}: {e.strerror}") from None
            if b"-----BEGIN " not in head:
                raise InputError(f"{where} {name} = {path!r} is not a PEM file")


@dataclass(frozen=True)
class ChassisEndpoint:
    """One hypervisor: its OVN chassis name (= system-id) and how to reach it."""

    name: str
    ovs_remote: str
    """Local Open_vSwitch DB, e.g. ``unix:/run/openvswitch/db.sock``."""
    integration_bridge: str = "br-int"
    netns: str | None = None
    """Network namespace the hypervisor's devices live in (None: the root namespace)."""
    encap_ip: str = ""
    controller_ctl: str | None = None
    """ovn-controller's unixctl socket (used for fault injection and diagnostics)."""
    ofctl: tuple[str, ...] = ("ovs-ofctl",)
    """The command that runs this chassis' ``ovs-ofctl`` (an argv prefix): the flow
    checks must speak the OpenFlow dialect of the OVS that runs there, e.g. a newer OVS's
    own binary started through its root's loader."""
    agent: str | None = None
    """The chassis' cutover agent: ``unix:/path/agent.sock`` or ``https://host:port``.
    When set, the orchestrator acts on the chassis only through it."""
    agent_token_file: str | None = None
    """File (mode 0600) holding the bearer token the agent requires."""
    agent_ca: str | None = None
    """``https`` agents: the CA that signed the agent's server certificate (None: the
    system's trust store)."""
    agent_client_cert: str | None = None
    """``https`` agents that require client certificates: ours (PEM) ..."""
    agent_client_key: str | None = None
    """... and its private key."""


@dataclass(frozen=True)
class VmSpec:
    """A VM (or a client guest) with one port on a logical switch."""

    name: str
    lsp: str
    mac: str
    ip: str
    chassis: str
    tap: str
    """TAP device name on whichever hypervisor hosts the VM (<= 15 chars)."""


@dataclass(frozen=True)
class Site:
    name: str
    nb_remote: str
    sb_remote: str
    chassis: tuple[ChassisEndpoint, ...]
    vms: tuple[VmSpec, ...]
    clients: tuple[VmSpec, ...] = ()
    """Ports reserved for probe clients (not migrated)."""
    guest_dir: str = ""
    """Where guest processes keep their control sockets and pidfiles."""
    state_dir: str = ""
    """Where cutover keeps durable state: the migration journal that ``cutover recover``
    reads after a crash ('' = no journal: a crashed migration needs hand clean-up)."""
    extra: dict[str, Any] = field(default_factory=dict)
    ssl: SslFiles | None = None
    """The orchestrator's OVSDB client certificate, for ``ssl:`` NB/SB remotes."""

    def chassis_named(self, name: str) -> ChassisEndpoint:
        for ch in self.chassis:
            if ch.name == name:
                return ch
        raise UnknownChassis(name, [c.name for c in self.chassis])

    def vm_named(self, name: str) -> VmSpec:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise UnknownVm(name, [v.name for v in self.vms])

    def client_named(self, name: str) -> VmSpec:
        for c in self.clients:
            if c.name == name:
                return c
        raise UnknownVm(name, [c.name for c in self.clients])

    def with_vm_on(self, vm: str, chassis: str) -> Site:
        """The same site after ``vm`` moved to ``chassis``."""
        self.chassis_named(chassis)
        moved = replace(self.vm_named(vm), chassis=chassis)
        return replace(self, vms=tuple(moved if v.name == vm else v for v in self.vms))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["version"] = SITE_FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Site:
        if d.get("version") != SITE_FORMAT_VERSION:
            raise InputError(
                f"site description has version {d.get('version')!r}, expected "
                f"{SITE_FORMAT_VERSION}; rebuild it (e.g. 'cutover lab down && cutover lab up')"
            )
        try:
            return cls(
                name=d["name"],
                nb_remote=d["nb_remote"],
                sb_remote=d["sb_remote"],
                chassis=tuple(_chassis(c) for c in d["chassis"]),
                vms=tuple(VmSpec(**v) for v in d["vms"]),
                clients=tuple(VmSpec(**v) for v in d.get("clients", [])),
                guest_dir=d.get("guest_dir", ""),
                state_dir=d.get("state_dir", ""),
                extra=dict(d.get("extra", {})),
                ssl=SslFiles(**d["ssl"]) if d.get("ssl") else None,
            )
        except (KeyError, TypeError) as e:
            raise InputError(f"site description is malformed ({e}); rebuild or fix it") from e

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Site:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError as e:
            raise InputError(f"no site description at {path}; is the lab up?") from e
        except json.JSONDecodeError as e:
            raise InputError(f"site description {path} is not JSON ({e})") from e


def _chassis(d: dict[str, Any]) -> ChassisEndpoint:
    """A chassis from JSON (lists back to tuples, so endpoints compare and hash)."""
    if "ofctl" in d:
        d = {**d, "ofctl": tuple(d["ofctl"])}
    return ChassisEndpoint(**d)
