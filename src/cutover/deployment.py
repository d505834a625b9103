"""A configured deployment at run time: connect to it, discover its VMs; a lab as a config.

:func:`connect` sets the orchestrator's OVSDB certificate, opens the NB and SB (within the
config's ``ovsdb_s``) and returns the Site with every VM complete: what the config file
left out is read from OVN (:func:`discover`: MAC and IP from the LSP's ``addresses``, the
chassis from the port's SB binding), so a config stays true while VMs move.
:func:`to_toml` writes a Site as a config file (``cutover lab config``).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import replace

from cutover.config import MAC_RE, Deployment, Timeouts
from cutover.errors import InputError
from cutover.ovsdb import tls
from cutover.ovsdb.nb import NbClient
from cutover.ovsdb.sb import SbClient
from cutover.site import Site


def connect(dep: Deployment) -> Site:
    """Connect to the deployment's NB and SB (its certificate first) and fill in what the
    config left to discovery. OvsdbError (OvsdbTlsError: a TLS refusal) if one cannot be
    reached; InputError if OVN cannot say where a VM is."""
    if dep.site.ssl is not None:
        tls.configure(dep.site.ssl)
    nb = NbClient(dep.site.nb_remote, dep.timeouts.ovsdb_s)
    sb = SbClient(dep.site.sb_remote, dep.timeouts.ovsdb_s)

    def bound_to(lsp: str) -> str | None:
        state = sb.binding(lsp)
        return state.chassis if state is not None else None

    return discover(dep, nb.lsp_addresses, bound_to)


LspAddresses = Callable[[str], list[str]]
BoundChassis = Callable[[str], str | None]


def discover(dep: Deployment, addresses: LspAddresses, bound_to: BoundChassis) -> Site:
    """The site with each VM's missing MAC/IP read from its LSP's ``addresses`` (first
    ``MAC IP...`` entry) and its missing chassis from its SB binding. ``addresses`` and
    ``bound_to`` read the NB/SB (:meth:`NbClient.lsp_addresses`,
    :meth:`SbClient.binding_chassis`). InputError if the NB/SB cannot say."""
    site = dep.site
    known = {c.name for c in site.chassis}
    vms = []
    for vm in site.vms:
        if vm.name not in dep.undiscovered:
            vms.append(vm)
            continue
        mac, ip = vm.mac, vm.ip
        if not (mac and ip):
            found = _mac_ip(addresses(vm.lsp))
            if found is None:
                raise InputError(f"VM {vm.name}: LSP {vm.lsp} has no 'MAC IP' address in the "
                                 "NB; give mac and ip in its [[vm]]")  # fmt: skip
            mac, ip = mac or found[0], ip or found[1]
        on = vm.chassis or bound_to(vm.lsp) or ""
        if not on:
            raise InputError(f"VM {vm.name}: LSP {vm.lsp} is bound to no chassis in the SB; "
                             "is the VM running? (or give chassis in its [[vm]])")  # fmt: skip
        if on not in known:
            raise InputError(f"VM {vm.name}: the SB binds {vm.lsp} to chassis {on!r}, which "
                             f"the config does not list; add a [[chassis]] {on}")  # fmt: skip
        vms.append(replace(vm, mac=mac.lower(), ip=ip, chassis=on))
    return replace(site, vms=tuple(vms))


def _mac_ip(addresses: list[str]) -> tuple[str, str] | None:
    for entry in addresses:
        words = entry.split()
        if len(words) >= 2 and MAC_RE.match(words[0]):
            for w in words[1:]:
                try:
                    ipaddress.ip_address(w)
                except ValueError:
                    continue
                return words[0], w
    return None


def to_toml(site: Site, timeouts: Timeouts | None = None, discover_vms: bool = True) -> str:
    """``site`` as a config file (``cutover lab config``: the lab's own site, for trying
    ``--config`` on it). With ``discover_vms`` each VM gives only name, lsp and tap: its
    MAC, IP and chassis are read from the NB/SB, as on a cloud where VMs move."""
    t = timeouts or Timeouts()
    out = [f"name = {_q(site.name)}", "", "[ovsdb]", f"nb = {_q(site.nb_remote)}",
           f"sb = {_q(site.sb_remote)}"]
    if site.ssl is not None:
        out += ["", "[ovsdb.ssl]", f"private_key = {_q(site.ssl.private_key)}",
                f"certificate = {_q(site.ssl.certificate)}", f"ca_cert = {_q(site.ssl.ca_cert)}"]
    out += ["", "[timeouts]", f"ready_s = {t.ready_s}", f"activation_s = {t.activation_s}",
            f"ovsdb_s = {t.ovsdb_s}", "", "[compute]",
            f"driver = {_q(str(site.extra.get('guest', 'emulated')))}",
            f"guest_dir = {_q(site.guest_dir)}",
            f"guest_ram_mb = {int(site.extra.get('guest_ram_mb', 128))}"]
    for c in site.chassis:
        out += ["", "[[chassis]]", f"name = {_q(c.name)}", f"agent = {_q(c.agent or '')}",
                f"token_file = {_q(c.agent_token_file or '')}",
                f"ovs_remote = {_q(c.ovs_remote)}",
                f"integration_bridge = {_q(c.integration_bridge)}"]
        out += [f"{k} = {_q(v)}" for k, v in (
            ("netns", c.netns), ("encap_ip", c.encap_ip), ("controller_ctl", c.controller_ctl),
            ("ca", c.agent_ca), ("client_cert", c.agent_client_cert),
            ("client_key", c.agent_client_key)) if v]
        out.append(f"ofctl = [{', '.join(_q(w) for w in c.ofctl)}]")
    for v in site.vms:
        out += ["", "[[vm]]", f"name = {_q(v.name)}", f"lsp = {_q(v.lsp)}", f"tap = {_q(v.tap)}"]
        if not discover_vms:
            out += [f"mac = {_q(v.mac)}", f"ip = {_q(v.ip)}", f"chassis = {_q(v.chassis)}"]
    return "\n".join(out) + "\n"


def _q(text: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(text)
