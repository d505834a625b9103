"""One hypervisor: a namespace with its own ovsdb-server, ovs-vswitchd and ovn-controller.

Each chassis gets its own Open_vSwitch database and run directory, so the usual bridge names
(``br-int``, ``br-phy``) can be used on every chassis without clashing - the management
sockets (``br-int.mgmt``) live in the chassis' OVS_RUNDIR, which is why every command here
runs with :func:`chassis_env`. There is no openvswitch kernel module on the lab machines, so
both bridges use the userspace (``netdev``) datapath, and userspace tunnelling needs the
underlay IP on ``br-phy``'s internal port, not on the veth.
"""

from __future__ import annotations

from collections.abc import Callable

from cutover.lab import host, pki, underlay
from cutover.lab.manifest import Manifest
from cutover.lab.rootfs import install_for
from cutover.lab.topology import ChassisSpec, LabTopology

INTEGRATION_BRIDGE = "br-int"
PHYSICAL_BRIDGE = "br-phy"
OVSDB = "ovsdb-server"
VSWITCHD = "ovs-vswitchd"
CONTROLLER = "ovn-controller"
DAEMONS = (OVSDB, VSWITCHD, CONTROLLER)


def chassis_env(ch: ChassisSpec) -> dict[str, str]:
    """All OVS/OVN default paths of this chassis' tools point at its own directory."""
    return host.daemon_env(ch.dir)


def vsctl(ch: ChassisSpec, *args: str, timeout: float = 30.0) -> str:
    """``ovs-vsctl`` on this chassis' own database (waits for vswitchd unless --no-wait)."""
    return host.run(
        [*install_for(ch.ovn).argv("ovs-vsctl"), f"--db=unix:{ch.db_sock}",
         f"--timeout={max(1, int(timeout))}", *args],
        env=chassis_env(ch), timeout=timeout + 5,
    )


def _spawn(topo: LabTopology, ch: ChassisSpec, manifest: Manifest, name: str,
           argv: list[str]) -> int:
    pid = host.spawn_daemon(
        [*argv, f"--log-file={ch.dir / (name + '.log')}"],
        netns=ch.netns, pidfile=ch.dir / f"{name}.pid", env=chassis_env(ch),
        timeout=topo.timeout_s,
    )
    manifest.add_process(pid, topo.marker, name, ch.name)
    return pid


def build_chassis(
    topo: LabTopology, ch: ChassisSpec, manifest: Manifest,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Namespace, underlay veth, OVSDB, vswitchd, bridges, OVN settings, ovn-controller.

    Every namespace and daemon is recorded in the manifest right after it exists. The OVN
    settings are written before ovn-controller starts, so it registers the chassis (with its
    Geneve encap) on its first connection to the SB.
    """
    def step(what: str) -> None:
        if progress:
            progress(f"{ch.name}: {what}")

    step("namespace and underlay link")
    ch.dir.mkdir(parents=True, exist_ok=True)
    host.netns_add(ch.netns)
    manifest.add_netns(ch.netns)
    host.netns_setup(ch.netns)
    underlay.connect_chassis(topo, ch)

    step("ovsdb-server")
    ovn = install_for(ch.ovn)
    db = ch.dir / "conf.db"
    db.unlink(missing_ok=True)
    host.run([*ovn.argv("ovsdb-tool"), "create", str(db), ovn.schema("vswitch")])
    _spawn(topo, ch, manifest, OVSDB,
           [*ovn.argv("ovsdb-server"), str(db), f"--remote=punix:{ch.db_sock}",
            f"--unixctl={ch.dir / 'ovsdb-server.ctl'}"])
    vsctl(ch, "--no-wait", "init", timeout=topo.timeout_s)

    step("ovs-vswitchd and bridges")
    _spawn(topo, ch, manifest, VSWITCHD,
           [*ovn.argv("ovs-vswitchd"), f"unix:{ch.db_sock}", "--enable-dummy",
            f"--unixctl={ch.dir / 'ovs-vswitchd.ctl'}"])
    vsctl(
        ch,
        "--", "add-br", PHYSICAL_BRIDGE,
        "--", "set", "Bridge", PHYSICAL_BRIDGE, "datapath_type=netdev",
        "--", "add-port", PHYSICAL_BRIDGE, ch.veth,
        "--", "add-br", INTEGRATION_BRIDGE,
        "--", "set", "Bridge", INTEGRATION_BRIDGE, "datapath_type=netdev", "fail-mode=secure",
        "other_config:disable-in-band=true",
        "--", "set", "Open_vSwitch", ".",
        f"external_ids:system-id={ch.name}",
        f"external_ids:hostname={ch.name}",
        f"external_ids:ovn-remote={topo.sb_remote}",
        "external_ids:ovn-encap-type=geneve",
        f"external_ids:ovn-encap-ip={ch.encap_ip}",
        f"external_ids:ovn-bridge={INTEGRATION_BRIDGE}",
        "external_ids:ovn-bridge-datapath-type=netdev",
        timeout=topo.timeout_s,
    )
    prefixlen = topo.underlay_subnet.split("/")[1]
    ip = host.tool("ip")
    host.run([ip, "-n", ch.netns, "addr", "add", f"{ch.encap_ip}/{prefixlen}", "dev",
              PHYSICAL_BRIDGE])
    host.run([ip, "-n", ch.netns, "link", "set", PHYSICAL_BRIDGE, "up"])

    step("ovn-controller")
    start_controller(topo, ch, manifest)


def start_controller(topo: LabTopology, ch: ChassisSpec, manifest: Manifest) -> int:
    """Start the chassis' ovn-controller (also again after it died); returns its pid.

    Its unixctl socket is always reachable at ``ch.controller_ctl``, the path the site
    gives for stalls and liveness checks."""
    ovn = install_for(ch.ovn)
    argv = [*ovn.argv("ovn-controller"), f"unix:{ch.db_sock}",
            *(pki.server_options(topo, ch.name) if pki.in_use(topo) else [])]
    if host.supports_option(tuple(ovn.argv("ovn-controller")), "--unixctl"):
        argv.append(f"--unixctl={ch.controller_ctl}")
    pid = _spawn(topo, ch, manifest, CONTROLLER, argv)
    if not (ch.controller_ctl.exists() and not ch.controller_ctl.is_symlink()):
        # OVN 23.03's ovn-controller has no --unixctl: its socket is OVN_RUNDIR/
        # ovn-controller.<pid>.ctl. A symlink gives stalls the fixed path all the same.
        ch.controller_ctl.unlink(missing_ok=True)
        ch.controller_ctl.symlink_to(f"{CONTROLLER}.{pid}.ctl")
    return pid


def tunnel_ports(ch: ChassisSpec) -> list[str]:
    """Geneve ports ovn-controller created on br-int that vswitchd has given an ofport."""
    out = vsctl(ch, "--bare", "--columns=name,ofport", "find", "Interface", "type=geneve")
    fields = out.split()
    pairs = zip(fields[::2], fields[1::2], strict=False)
    return [name for name, ofport in pairs if ofport.lstrip("-").isdigit() and int(ofport) > 0]
