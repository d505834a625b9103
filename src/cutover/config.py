"""A real deployment's configuration: one TOML file, checked whole before anything connects.

The file names the OVN central databases (a cluster as a comma-separated list of members),
the orchestrator's OVSDB client certificate, every chassis with its agent (``https://``
with a private CA, a bearer token, optionally a client certificate), the timeouts, the
compute driver and the VMs an operator may migrate. :func:`load` turns it into a
:class:`Deployment` or raises ONE :class:`~cutover.errors.InputError` line naming the key
(``chassis[2].agent``) and what is wrong: unknown keys, wrong types, relative or
unreadable files, bad remotes, duplicate names, a VM on an unknown chassis. Nothing here
opens a connection; :func:`discover` later fills a VM's MAC/IP from its LSP in the NB
and its chassis from its SB binding, when the file leaves them out.

Example and reference: ``docs/examples/cutover.toml`` and ``docs/deployment.md``.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from cutover import bounds
from cutover.agent.server import read_token
from cutover.errors import InputError
from cutover.ovsdb.tls import check_remote, uses_ssl
from cutover.site import ChassisEndpoint, Site, SslFiles, VmSpec

DEFAULT_OVS_REMOTE = "unix:/run/openvswitch/db.sock"
DRIVERS = ("emulated", "qemu", "libvirt")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")

T = TypeVar("T")


@dataclass(frozen=True)
class Timeouts:
    ready_s: float = 30.0
    activation_s: float = 30.0
    ovsdb_s: float = 30.0
    """How long a first NB/SB connection (a cluster: to any member) may take."""


@dataclass(frozen=True)
class Deployment:
    """A checked config file: the Site it describes plus what a Site does not hold."""

    path: Path
    site: Site
    timeouts: Timeouts
    driver: str
    undiscovered: tuple[str, ...]
    """VMs whose MAC, IP or chassis the file left to :func:`cutover.deployment.discover`."""


class _Table:
    """One TOML table being read: every key taken is checked, leftovers are refused."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise InputError(f"{where} must be a table, not {_kind(data)}")
        self.data: dict[str, Any] = data
        self.where = where
        self.taken: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kind: type[T], default: T | None = None,
            required: bool = False) -> T | None:  # fmt: skip
        self.taken.add(name)
        if name not in self.data:
            if required:
                raise InputError(f"{self.key(name)} is missing")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise InputError(f"{self.key(name)} must be {_kind_name(kind)}, not {_kind(value)}")
        return value

    def text(self, name: str, required: bool = False, default: str | None = None) -> str | None:
        value = self.get(name, str, default, required)
        if value is not None and not value.strip():
            raise InputError(f"{self.key(name)} is empty")
        return value

    def need(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def table(self, name: str, required: bool = False) -> _Table | None:
        self.taken.add(name)
        if name not in self.data:
            if required:
                raise InputError(f"[{self.key(name)}] is missing")
            return None
        return _Table(self.data[name], self.key(name))

    def tables(self, name: str) -> list[_Table]:
        self.taken.add(name)
        items = self.data.get(name, [])
        if not isinstance(items, list):
            raise InputError(f"{self.key(name)} must be an array of tables ([[{name}]])")
        return [_Table(item, f"{self.key(name)}[{i}]") for i, item in enumerate(items)]

    def only(self, *names: str) -> None:
        """Refuse unknown keys now, before the known ones are read (a misspelt table name
        would otherwise surface as whatever it left missing)."""
        self.taken.update(names)
        self.done()

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.taken)
        if unknown:
            known = ", ".join(sorted(self.taken))
            raise InputError(f"unknown key {self.key(unknown[0])!r}"
                             + (f" (known here: {known})" if known else ""))


def _kind(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _kind_name(kind: type) -> str:
    return {str: "a string", float: "a number", int: "an integer", bool: "true or false",
            list: "an array"}.get(kind, kind.__name__)


def _file(path: str, key: str) -> str:
    """An absolute path to a readable regular file (checked now, not at first use)."""
    p = Path(path)
    if not p.is_absolute():
        raise InputError(f"{key} = {path!r}: give an absolute path")
    if not p.is_file():
        raise InputError(f"{key} = {path!r}: no such file")
    try:
        with p.open("rb"):
            pass
    except OSError as e:
        raise InputError(f"{key} = {path!r}: {e.strerror}") from None
    return path


def _ssl(t: _Table) -> SslFiles:
    files = SslFiles(private_key=_file(t.need("private_key"), t.key("private_key")),
                     certificate=_file(t.need("certificate"), t.key("certificate")),
                     ca_cert=_file(t.need("ca_cert"), t.key("ca_cert")))
    t.done()
    files.check(f"[{t.where}]")
    return files


def _timeouts(t: _Table | None) -> Timeouts:
    if t is None:
        return Timeouts()
    out = Timeouts()
    for name, bound in (("ready_s", bounds.READY_TIMEOUT_S),
                        ("activation_s", bounds.ACTIVATION_TIMEOUT_S),
                        ("ovsdb_s", bounds.READY_TIMEOUT_S)):
        value = t.get(name, float)
        if value is not None:
            try:
                bounds.check(bound, value)
            except InputError as e:
                raise InputError(f"{t.key(name)}: {str(e).removeprefix(bound.name + ' ')}"
                                 ) from None  # fmt: skip
            out = replace(out, **{name: value})
    t.done()
    return out


def _token_file(path: str, key: str) -> str:
    """Mode 0600 and long enough, as the agent itself checks its copy."""
    _file(path, key)
    try:
        read_token(Path(path))
    except InputError as e:
        raise InputError(f"{key}: {e}") from None
    return path


def _chassis(t: _Table, defaults: dict[str, str | None]) -> ChassisEndpoint:
    name = t.need("name")
    if not _NAME_RE.match(name):
        raise InputError(f"{t.key('name')} = {name!r}: use letters, digits and _.:- "
                         "(the chassis' system-id)")  # fmt: skip
    agent = t.need("agent")
    if agent.startswith("https://"):
        hostport = agent[len("https://"):].rstrip("/")
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in hostport:
            raise InputError(f"{t.key('agent')} = {agent!r}: give https://HOST:PORT")
    elif agent.startswith("unix:"):
        _absolute(agent[len("unix:"):], t.key("agent"))
    else:
        raise InputError(f"{t.key('agent')} = {agent!r}: give https://HOST:PORT (or unix:/path "
                         "on the same host); plain http is refused")  # fmt: skip

    def opt(key: str) -> str | None:
        value = t.text(key)
        return value if value is not None else defaults.get(key)

    token = opt("token_file")
    if token is None:
        raise InputError(f"{t.key('token_file')} is missing (or set [agents] token_file)")
    ca, cert, key = opt("ca"), opt("client_cert"), opt("client_key")
    if (cert is None) != (key is None):
        raise InputError(f"{t.where}: give client_cert and client_key together")
    if agent.startswith("unix:") and (ca or cert):
        raise InputError(f"{t.where}: ca/client_cert/client_key go with an https:// agent")
    where = t.where
    ovs_remote = t.text("ovs_remote") or DEFAULT_OVS_REMOTE
    if not ovs_remote.startswith("unix:"):
        raise InputError(f"{t.key('ovs_remote')} = {ovs_remote!r}: the agent reaches its node's "
                         "Open_vSwitch DB over a unix: socket")  # fmt: skip
    bridge = t.text("integration_bridge") or "br-int"
    encap_ip = t.text("encap_ip") or ""
    if encap_ip:
        _ip(encap_ip, t.key("encap_ip"))
    netns = t.text("netns")
    controller_ctl = t.text("controller_ctl")
    ofctl = t.get("ofctl", list)
    if ofctl is not None and not (ofctl and all(isinstance(w, str) and w for w in ofctl)):
        raise InputError(f"{t.key('ofctl')} must be a non-empty array of strings")
    t.done()
    return ChassisEndpoint(
        name=name, ovs_remote=ovs_remote, integration_bridge=bridge, netns=netns,
        encap_ip=encap_ip, controller_ctl=controller_ctl,
        ofctl=tuple(ofctl) if ofctl else ("ovs-ofctl",), agent=agent,
        agent_token_file=_token_file(token, f"{where}.token_file"),
        agent_ca=_file(ca, f"{where}.ca") if ca else None,
        agent_client_cert=_file(cert, f"{where}.client_cert") if cert else None,
        agent_client_key=_file(key, f"{where}.client_key") if key else None,
    )


def _absolute(path: str, key: str) -> None:
    if not Path(path).is_absolute():
        raise InputError(f"{key} = {path!r}: give an absolute path")


def _ip(text: str, key: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise InputError(f"{key} = {text!r} is not an IP address") from None


def _vm(t: _Table, chassis: set[str]) -> tuple[VmSpec, bool]:
    """A VM, and whether discovery must fill some of it."""
    name = t.need("name")
    if not _NAME_RE.match(name):
        raise InputError(f"{t.key('name')} = {name!r}: use letters, digits and _.:-")
    lsp = t.need("lsp")
    tap = t.need("tap")
    if len(tap) > 15 or "/" in tap or " " in tap:
        raise InputError(f"{t.key('tap')} = {tap!r}: a Linux interface name (<= 15 characters)")
    mac = t.text("mac") or ""
    if mac and not MAC_RE.match(mac):
        raise InputError(f"{t.key('mac')} = {mac!r}: give xx:xx:xx:xx:xx:xx")
    ip = t.text("ip") or ""
    if ip:
        _ip(ip, t.key("ip"))
    on = t.text("chassis") or ""
    if on and on not in chassis:
        raise InputError(f"{t.key('chassis')} = {on!r} is not a [[chassis]] of this file "
                         f"(known: {', '.join(sorted(chassis))})")  # fmt: skip
    t.done()
    return VmSpec(name=name, lsp=lsp, mac=mac.lower(), ip=ip, chassis=on, tap=tap), not (
        mac and ip and on)


def _unique(items: list[str], what: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise InputError(f"{what} {item!r} appears twice")
        seen.add(item)


def parse(text: str, path: Path) -> Deployment:
    """The checked Deployment of TOML ``text`` (read from ``path``, for messages)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"config {path}: not valid TOML ({e})") from None
    try:
        return _deployment(_Table(data, ""), path)
    except InputError as e:
        raise InputError(f"config {path}: {e}") from None


def _deployment(top: _Table, path: Path) -> Deployment:
    top.only("name", "ovsdb", "timeouts", "agents", "chassis", "compute", "vm")
    name = top.text("name") or path.stem
    ovsdb = top.table("ovsdb", required=True)
    assert ovsdb is not None
    nb, sb = ovsdb.need("nb"), ovsdb.need("sb")
    check_remote(nb, ovsdb.key("nb"))
    check_remote(sb, ovsdb.key("sb"))
    ssl_table = ovsdb.table("ssl")
    ssl = _ssl(ssl_table) if ssl_table is not None else None
    ovsdb.done()
    if ssl is None and (uses_ssl(nb) or uses_ssl(sb)):
        raise InputError("ovsdb.nb/sb use ssl: but [ovsdb.ssl] is missing (private_key, "
                         "certificate, ca_cert)")  # fmt: skip
    timeouts = _timeouts(top.table("timeouts"))

    agents = top.table("agents")
    defaults: dict[str, str | None] = {}
    if agents is not None:
        defaults = {k: agents.text(k) for k in ("token_file", "ca", "client_cert", "client_key")}
        agents.done()
    chassis = [_chassis(t, defaults) for t in top.tables("chassis")]
    if len(chassis) < 2:
        raise InputError("give at least two [[chassis]] (a source and a destination)")
    _unique([c.name for c in chassis], "chassis")

    compute = top.table("compute", required=True)
    assert compute is not None
    driver = compute.need("driver")
    if driver not in DRIVERS:
        raise InputError(f"compute.driver = {driver!r}: choose one of {', '.join(DRIVERS)}")
    guest_dir = compute.need("guest_dir")
    _absolute(guest_dir, "compute.guest_dir")
    if not Path(guest_dir).is_dir():
        raise InputError(f"compute.guest_dir = {guest_dir!r}: no such directory")
    state_dir = compute.text("state_dir") or ""
    if state_dir:
        _absolute(state_dir, "compute.state_dir")
        if not Path(state_dir).is_dir():
            raise InputError(f"compute.state_dir = {state_dir!r}: no such directory")
    ram = compute.get("guest_ram_mb", int, 128)
    assert ram is not None
    try:
        bounds.check(bounds.GUEST_RAM_MB, ram)
    except InputError as e:
        raise InputError(f"compute.guest_ram_mb: {e}") from None
    compute.done()

    names = {c.name for c in chassis}
    vms = [_vm(t, names) for t in top.tables("vm")]
    if not vms:
        raise InputError("give at least one [[vm]] (name, lsp, tap)")
    _unique([v.name for v, _ in vms], "vm")
    _unique([v.lsp for v, _ in vms], "vm lsp")
    top.done()
    site = Site(name=name, nb_remote=nb, sb_remote=sb, chassis=tuple(chassis),
                vms=tuple(v for v, _ in vms), guest_dir=guest_dir, state_dir=state_dir,
                extra={"guest": driver, "guest_ram_mb": ram, "config": str(path)}, ssl=ssl)
    return Deployment(path=path, site=site, timeouts=timeouts, driver=driver,
                      undiscovered=tuple(v.name for v, partial in vms if partial))


def load(path: Path) -> Deployment:
    """Read and check ``path`` (see the module docstring)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"config {path}: {e.strerror}") from None
    return parse(text, path)
