"""The lab's shape as plain data: names, addresses and paths, computed and validated up front.

Like Mininet, the topology is described first and built separately: every name the builders
use (namespaces, interfaces, sockets, logical ports) comes from here, so a bad prefix or a
name the kernel would truncate is rejected before anything is created, with an error that
says which name and why. Nothing in this module touches the system.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cutover.chassis.base import vm_uuid
from cutover.errors import InputError
from cutover.lab.ovn_install import parse_ovn

IFNAMSIZ = 15
"""Longest Linux interface name (IFNAMSIZ - 1): longer names are refused by the kernel."""

UNIX_PATH_MAX = 107
"""Longest unix socket path (sun_path is 108 bytes incl. NUL); OVS refuses longer remotes."""

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
_TAG_RE = re.compile(r"^[a-z][a-z0-9]{0,3}$")

DEFAULT_LAB_ROOT = Path("/tmp/cutover")
CLUSTER_SIZE = 3
"""Members of each clustered database: the smallest RAFT cluster that survives a loss."""


@dataclass(frozen=True)
class ChassisSpec:
    """One hypervisor of the lab: its own netns, OVSDB, vswitchd and ovn-controller."""

    name: str
    """OVN chassis name = Open_vSwitch external_ids:system-id (``hv1``...)."""
    netns: str
    encap_ip: str
    dir: Path
    """Run/db/log directory of this chassis' daemons (also its OVS_RUNDIR)."""
    veth: str
    """Underlay veth end inside the chassis netns (a port of br-phy)."""
    ul_veth: str
    """Peer end inside the underlay netns (a port of the underlay bridge)."""
    ovn: str = "host"
    """Which OVN/OVS installation runs this chassis (the lab's ``--ovn`` choice)."""

    @property
    def db_sock(self) -> Path:
        return self.dir / "db.sock"

    @property
    def controller_ctl(self) -> Path:
        """Fixed ovn-controller unixctl path, so stalls can reach it without a pid lookup."""
        return self.dir / "ovn-controller.ctl"


@dataclass(frozen=True)
class PortSpec:
    """A VM or client port: the LSP and the TAP that stands for the guest's NIC."""

    name: str
    lsp: str
    mac: str
    ip: str
    chassis: str
    tap: str
    vm_uuid: str
    """Recorded as Interface external_ids:vm-uuid like Nova does; the same UUID a
    migration's plug writes (:func:`cutover.chassis.base.vm_uuid`)."""


@dataclass(frozen=True)
class LabTopology:
    """Everything the lab builds, derived from a prefix and a chassis count.

    ``prefix`` names every resource (netns ``{prefix}-hv1``, switch ``{prefix}-ls``...) so
    that two labs with different prefixes never touch each other's resources. ``tag`` is a
    short form of the prefix for interface names, which the kernel limits to 15 characters.
    """

    prefix: str = "cutover"
    n_chassis: int = 3
    lab_dir: Path | None = None
    """Defaults to ``/tmp/cutover/<prefix>``; always a Path after construction (typed
    access: :attr:`dir`)."""
    tag: str | None = None
    """Short tag for interface names; defaults to the prefix's first and middle characters
    (``cutover`` -> ``co``, so TAPs are ``cot-vm1``)."""
    underlay_subnet: str = "172.31.250.0/24"
    vm_subnet: str = "10.99.0.0/24"
    n_vms: int | None = None
    """Migratable VMs; defaults to one per VM chassis (every chassis but the spares and the
    last, which hosts the client)."""
    spare_chassis: int = 0
    """Chassis that host no port at all - none on the lab switch either - placed between
    the VM chassis and the client's. Migrating a VM to one gives that chassis its first
    port on the switch: the case where released OVN builds report ``ovn-installed`` before
    the switch's logical flows arrive (port-ready must not be fooled there). A chassis
    only stays "spare" until a port lands on it: ovn-controller keeps the switch's flows
    after the port leaves, until a full recompute. The default builds none."""
    client_host: int = 100
    """Host part of the client's IP (10.99.0.100 by default)."""
    timeout_s: float = 30.0
    """Upper bound for each wait during the build (daemon start, SB registration, hv sync)."""
    ovn: str = "host"
    """OVN/OVS installation of every daemon and CLI: ``host`` or a newer Debian build
    (:data:`cutover.lab.ovn_install.OVN_CHOICES`)."""
    clustered: bool = False
    """NB and SB each as a RAFT cluster of :data:`CLUSTER_SIZE` ``ovsdb-server``
    members (``lab up --clustered``); every client is given the member list."""

    ssl: bool = False
    """NB and SB listen on ``ssl:`` (in the underlay namespace, at :attr:`central_ip`) and
    every client - northd, ovn-controllers, agents, the orchestrator - connects with a
    certificate of the lab's PKI (:mod:`cutover.lab.pki`)."""

    def __post_init__(self) -> None:
        parse_ovn(self.ovn)
        if self.ssl and self.clustered:
            raise InputError(
                "--ssl and --clustered cannot be combined yet (an SSL listener per cluster "
                "member is not built); choose one"
            )
        if not _PREFIX_RE.match(self.prefix):
            raise InputError(
                f"lab prefix {self.prefix!r} is invalid: use 1-10 characters, lowercase letters "
                "and digits, starting with a letter (it names namespaces and interfaces)"
            )
        if self.tag is not None and not _TAG_RE.match(self.tag):
            raise InputError(
                f"lab tag {self.tag!r} is invalid: use 1-4 lowercase letters/digits, "
                "starting with a letter"
            )
        if not 2 <= self.n_chassis <= 99:
            raise InputError(
                f"n_chassis={self.n_chassis}: the lab needs 2-99 chassis "
                "(VMs on the first ones, the probe client on the last)"
            )
        if self.n_vms is not None and not 1 <= self.n_vms <= 99:
            raise InputError(f"n_vms={self.n_vms}: use 1-99 VMs")
        if not 0 <= self.spare_chassis <= self.n_chassis - 2:
            raise InputError(
                f"spare_chassis={self.spare_chassis}: use 0-{self.n_chassis - 2} with "
                f"{self.n_chassis} chassis (at least one must host VMs and one the client)"
            )
        lab_dir = Path(self.lab_dir) if self.lab_dir is not None else DEFAULT_LAB_ROOT / self.prefix
        if not lab_dir.is_absolute():
            raise InputError(f"lab_dir {str(lab_dir)!r} must be an absolute path")
        object.__setattr__(self, "lab_dir", lab_dir)
        self._check_networks()
        self._check_names()

    # -- addresses -------------------------------------------------------------------------

    def _check_networks(self) -> None:
        try:
            ul = ipaddress.IPv4Network(self.underlay_subnet)
            vm = ipaddress.IPv4Network(self.vm_subnet)
        except ValueError as e:
            raise InputError(f"bad lab subnet: {e}") from e
        if ul.num_addresses < 10 + self.n_chassis + 2:
            raise InputError(
                f"underlay subnet {ul} is too small for {self.n_chassis} chassis at .11 upwards"
            )
        if vm.num_addresses < max(self.vms_count, self.client_host) + 2:
            raise InputError(f"VM subnet {vm} is too small for the VMs and the client")
        if not self.vms_count < self.client_host < vm.num_addresses - 1:
            raise InputError(
                f"client_host={self.client_host} collides with the VM addresses or the broadcast"
            )

    @property
    def vm_chassis_count(self) -> int:
        """Chassis that host VMs: the first ones, before the spares and the client's."""
        return self.n_chassis - 1 - self.spare_chassis

    @property
    def vms_count(self) -> int:
        return self.n_vms if self.n_vms is not None else self.vm_chassis_count

    def _host_ip(self, subnet: str, host: int) -> str:
        return str(ipaddress.IPv4Network(subnet).network_address + host)

    # -- names -----------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        """The lab directory (resolved default): everything the lab writes lives below it."""
        assert self.lab_dir is not None  # resolved in __post_init__
        return self.lab_dir

    @property
    def short(self) -> str:
        """Tag for TAP names: a TAP name must fit 15 characters including the VM name."""
        if self.tag is not None:
            return self.tag
        if len(self.prefix) <= 2:
            return self.prefix
        return self.prefix[0] + self.prefix[len(self.prefix) // 2]

    @property
    def marker(self) -> str:
        """A string every lab daemon's command line contains (its pidfile path is under it)."""
        return str(self.dir) + "/"

    @property
    def switch(self) -> str:
        return f"{self.prefix}-ls"

    @property
    def underlay_netns(self) -> str:
        return f"{self.prefix}-ul"

    @property
    def underlay_bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def central_ip(self) -> str:
        """Where an SSL lab's NB and SB listen: on the underlay bridge, in its namespace (a
        real SB is reached over the network; the root namespace gets no address)."""
        return self._host_ip(self.underlay_subnet, 2)

    @property
    def central_netns(self) -> str | None:
        """Namespace of the central daemons (and of an SSL lab's orchestrator)."""
        return self.underlay_netns if self.ssl else None

    @property
    def pki_dir(self) -> Path:
        return self.dir / "pki"

    @property
    def central_dir(self) -> Path:
        return self.dir / "central"

    @property
    def nb_sock(self) -> Path:
        return self.central_dir / "ovnnb_db.sock"

    @property
    def sb_sock(self) -> Path:
        return self.central_dir / "ovnsb_db.sock"

    @property
    def cluster_netns(self) -> str:
        """Namespace of a clustered lab's database members: their RAFT addresses are on
        its own loopback, so fixed ports cannot clash with anything on the machine."""
        return f"{self.prefix}-db"

    def db_socks(self, db: str) -> tuple[Path, ...]:
        """The client sockets of ``db`` (``nb``/``sb``): one, or one per cluster member
        (the first is the standalone path, so single-socket tools still find one)."""
        first = self.nb_sock if db == "nb" else self.sb_sock
        if not self.clustered:
            return (first,)
        return (first, *(first.with_name(f"{first.stem}{i}.sock")
                         for i in range(2, CLUSTER_SIZE + 1)))

    def local_remote(self, db: str) -> str:
        """The lab's own tools' way to ``db`` (``nb``/``sb``) on the central node: its unix
        socket(s), never ``ssl:`` (the lab's ``nbctl``/``sbctl`` carry no certificate)."""
        return ",".join(f"unix:{s}" for s in self.db_socks(db))

    @property
    def nb_remote(self) -> str:
        """What every NB client is given: ``ssl:`` in an SSL lab, else ``unix:...`` or the
        cluster members' comma-separated list."""
        if self.ssl:
            return f"ssl:{self.central_ip}:6641"
        return self.local_remote("nb")

    @property
    def sb_remote(self) -> str:
        if self.ssl:
            return f"ssl:{self.central_ip}:6642"
        return self.local_remote("sb")

    @property
    def guest_dir(self) -> Path:
        return self.dir / "guests"

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def site_path(self) -> Path:
        return self.dir / "site.json"

    @cached_property
    def chassis(self) -> tuple[ChassisSpec, ...]:
        return tuple(self._chassis(i) for i in range(1, self.n_chassis + 1))

    def _chassis(self, i: int) -> ChassisSpec:
        name = f"hv{i}"
        return ChassisSpec(
            name=name,
            netns=f"{self.prefix}-{name}",
            encap_ip=self._host_ip(self.underlay_subnet, 10 + i),
            dir=self.dir / name,
            veth=f"{self.prefix}-eth0",
            ul_veth=f"{self.prefix}-{name}",
            ovn=self.ovn,
        )

    def chassis_named(self, name: str) -> ChassisSpec:
        for ch in self.chassis:
            if ch.name == name:
                return ch
        raise InputError(f"chassis {name!r} is not in this lab topology")

    @cached_property
    def vms(self) -> tuple[PortSpec, ...]:
        """vmK lives on hv((K-1) mod M + 1), M = :attr:`vm_chassis_count`: every chassis
        but the spares and the last hosts VMs."""
        return tuple(
            self._port(f"vm{k}", k, f"hv{(k - 1) % self.vm_chassis_count + 1}")
            for k in range(1, self.vms_count + 1)
        )

    @property
    def spares(self) -> tuple[str, ...]:
        """Names of the chassis that host no port (see :attr:`spare_chassis`)."""
        first = self.vm_chassis_count + 1
        return tuple(f"hv{i}" for i in range(first, first + self.spare_chassis))

    @cached_property
    def client(self) -> PortSpec:
        return self._port("client", self.client_host, f"hv{self.n_chassis}")

    @cached_property
    def ports(self) -> tuple[PortSpec, ...]:
        return (*self.vms, self.client)

    def _port(self, name: str, host: int, chassis: str) -> PortSpec:
        return PortSpec(
            name=name,
            lsp=f"{self.prefix}-{name}",
            mac=f"02:00:00:00:00:{host:02x}",
            ip=self._host_ip(self.vm_subnet, host),
            chassis=chassis,
            tap=f"{self.short}t-{name}",
            vm_uuid=vm_uuid(name),
        )

    def _check_names(self) -> None:
        ifnames = [self.underlay_bridge]
        for ch in self.chassis:
            ifnames += [ch.veth, ch.ul_veth]
        ifnames += [p.tap for p in self.ports]
        for n in ifnames:
            if len(n) > IFNAMSIZ:
                raise InputError(
                    f"interface name {n!r} would be {len(n)} characters (Linux allows "
                    f"{IFNAMSIZ}); use a shorter prefix or tag than {self.prefix!r}/{self.short!r}"
                )
        socks = [*self.db_socks("nb"), *self.db_socks("sb"), self.central_dir / "ovn-northd.ctl"]
        for ch in self.chassis:
            socks += [ch.db_sock, ch.controller_ctl, ch.dir / "br-int.mgmt"]
        for s in socks:
            if len(str(s)) > UNIX_PATH_MAX:
                raise InputError(
                    f"socket path {str(s)!r} is {len(str(s))} characters (unix sockets allow "
                    f"{UNIX_PATH_MAX}); use a shorter lab_dir"
                )
