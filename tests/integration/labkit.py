"""What the integration modules share: a running lab with guests, and small probes of it.

Each module still builds its own lab under its own prefix (a failing module cannot break
the next one); this only keeps the build/teardown and the helpers in one place.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cutover.bench.faults import StallInjector, StallPlan
from cutover.guest.emulated import EmulatedHypervisor
from cutover.lab import Lab, LabTopology, host
from cutover.migration.clients import SiteClients
from cutover.ovsdb.connection import close_all
from cutover.ovsdb.vswitch import VswitchClient
from cutover.readiness.nb_cfg import describe_chassis_private
from cutover.site import Site, VmSpec

SUFFIX = os.environ.get("CUTOVER_TEST_SUFFIX", "")
"""Appended to every integration test's lab prefix, so that two checkouts can run the
suite at the same time on one machine (e.g. ``CUTOVER_TEST_SUFFIX=b``)."""


OVN = os.environ.get("CUTOVER_TEST_OVN", "host")
"""The OVN the integration labs run (``lab up --ovn``): ``host`` by default; ``make test``
runs the version-dependent modules again with e.g. ``CUTOVER_TEST_OVN=25.03``. A root that
cannot be built fails the tests (LabBuildError from the fixture), it never skips them."""


def lab_prefix(base: str) -> str:
    """The lab prefix a test module uses: ``base`` plus :data:`SUFFIX`."""
    return base + SUFFIX


def running_lab(prefix: str, n_chassis: int = 3, spare_chassis: int = 0, ssl: bool = False,
                clustered: bool = False) -> Iterator[Lab]:
    """Build a lab (on :data:`OVN`) with its guests running; on exit tear it down and
    check nothing is left (use as ``yield from running_lab(PREFIX)`` in a module fixture)."""
    lab = Lab(LabTopology(prefix=prefix, n_chassis=n_chassis, spare_chassis=spare_chassis,
                          ovn=OVN, ssl=ssl, clustered=clustered))
    lab.down()  # a crashed earlier run may have left one
    site = lab.up()
    assert site.extra["ovn"]["install"] == OVN  # the lab really runs the asked-for OVN
    hv = EmulatedHypervisor(site)
    for vm in site.vms:
        hv.ensure_running(vm)
    yield lab
    close_all()
    assert lab.down() == []
    assert host.list_netns(prefix) == []


def vswitch(site: Site, chassis: str) -> VswitchClient:
    """The local Open_vSwitch DB of a lab chassis, for a test to look at (the migration
    itself reaches chassis only through the chassis seam)."""
    return VswitchClient(chassis, site.chassis_named(chassis).ovs_remote)


def other_chassis(site: Site, vm: str) -> str:
    """The migration destination: neither the VM's chassis nor the client's."""
    here = site.vm_named(vm).chassis
    client = site.clients[0].chassis
    return next(c.name for c in site.chassis if c.name not in (here, client))


def ofctl_children() -> list[int]:
    """ovs-ofctl processes started by this test process (flow monitors left behind),
    also when started through a Debian root's loader (whose ``comm`` is the loader's)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid != os.getpid():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if comm == "ovs-ofctl" or any(a.endswith(b"/ovs-ofctl") for a in argv[:4]):
            found.append(int(pid))
    return found


@contextmanager
def stalled(
    site: Site, dst: str, spec: str, wait_over: bool = True
) -> Iterator[StallInjector]:
    """A stall (``dst:MS`` / ``peer:MS``) armed for one migration; on exit it is waited out
    (or, with ``wait_over=False``, cut short) and the controller resumed, whatever the
    migration did."""
    chassis = SiteClients.connect(site).chassis
    injector = StallPlan.parse(spec).injector(chassis, dst, site.clients[0].chassis)
    try:
        yield injector
    finally:
        if wait_over:
            injector.wait_over()
        injector.finish()


def links(site: Site, chassis: str) -> str:
    """``ip -br link`` inside a chassis namespace."""
    netns = site.chassis_named(chassis).netns
    assert netns is not None
    return host.run(["ip", "-n", netns, "-br", "link"])


def assert_rolled_back(
    clients: SiteClients, hv: EmulatedHypervisor, site: Site, vm: VmSpec, src: str, dst: str
) -> None:
    """A failed migration left nothing behind: the port pinned to its source again, no
    activation option, no destination OVS port, TAP or incoming guest."""
    assert clients.nb.requested_chassis(vm.lsp) == [src]
    assert "activation-strategy" not in clients.nb.lsp_options(vm.lsp)
    assert vswitch(site, dst).interface(vm.tap) is None
    assert vm.tap not in links(site, dst)
    assert hv.status(vm, dst) is None


def sync_chassis(clients: SiteClients, chassis: str, timeout_s: float = 30.0) -> int:
    """Return once ``chassis``' ovn-controller has processed every NB change made so far
    (a positive sync point for proving a negative): bump ``NB_Global.nb_cfg`` and wait -
    a Watch registered before the bump - until its ``Chassis_Private.nb_cfg`` reaches it.

    ovn-controller reports an nb_cfg only after computing and installing the flows of that
    SB state, and it commits the SB writes of that computation (claims, releases) in an
    earlier or the same transaction; the SB delivers one client's transactions in order.
    So when this returns, a Watch on the bad state registered before the action has fired
    if the controller made it happen. Returns the nb_cfg reached; WaitTimeout (with the
    row seen) if the controller does not catch up - a hung controller fails, not passes.
    """
    target: list[int] = []

    def caught_up(row: object) -> bool:
        return bool(target and row.name == chassis  # type: ignore[attr-defined]
                    and int(row.nb_cfg) >= target[0])  # type: ignore[attr-defined]

    watch = clients.sb.register(
        "Chassis_Private", caught_up, f"Chassis_Private {chassis} to reach the bumped nb_cfg",
        lambda: describe_chassis_private(clients.sb, chassis),
    )
    try:
        target.append(clients.nb.bump_nb_cfg())
        watch.recheck(clients.sb.rows("Chassis_Private"))
        watch.wait(timeout_s)
    finally:
        watch.cancel()
    return target[0]


_TAP_OFFLOADS = """
import array, fcntl, socket, struct, sys
def get(cmd):
    ev = array.array("I", [cmd, 0])
    ifr = struct.pack("16sP", sys.argv[1].encode(), ev.buffer_info()[0])
    with socket.socket() as s:
        fcntl.ioctl(s.fileno(), 0x8946, ifr)  # SIOCETHTOOL
    return ev[1]
print(get(0x16), get(0x1E))  # ETHTOOL_GTXCSUM, ETHTOOL_GTSO
"""


def tap_offloads(site: Site, vm: VmSpec) -> tuple[int, int]:
    """(tx checksum, TSO) of ``vm``'s TAP on its chassis, as the kernel reports them
    (``ethtool -k``'s ioctls; ethtool itself is not installed here). A QEMU guest whose NIC
    offers offloads turns both on when its driver negotiates them."""
    ns = site.chassis_named(vm.chassis).netns
    assert ns is not None
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _TAP_OFFLOADS,
                          vm.tap], capture_output=True, text=True, timeout=30, check=True)
    csum, tso = out.stdout.split()
    return int(csum), int(tso)
