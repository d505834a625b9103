"""Pure logic of the real-guest path: kernel ABI, vmlinux extraction, module order, the
initramfs archive, QMP event times and migration figures, QEMU's command line, guest
options, and the report sections about the floor and the guest's figures."""

from __future__ import annotations

import lzma
from pathlib import Path
from typing import Any, cast

import pytest

from cutover.bench.guest_report import floor_median, floor_rows, guest_rows, guest_section
from cutover.bench.results import BenchResult, RunResult
from cutover.bench.runner import guest_figures
from cutover.errors import GuestError, InputError, PrerequisiteError
from cutover.guest import qemu_proc
from cutover.guest.image import GuestImage, extract_vmlinux, parse_abi
from cutover.guest.initramfs import load_order, module_depends, newc_archive, recipe_id
from cutover.guest.qemu import QemuHypervisor
from cutover.guest.qemu_hold import (
    HOLD_TAIL_SAFETY,
    QEMU_WINDOW_S,
    TRICKLE_BYTES_S,
    HoldPlan,
)
from cutover.guest.qemu_proc import OFFLOADS_ENV, QemuFiles, guest_offloads, qemu_argv
from cutover.guest.qmp import event_ms, is_migration, migration_figures
from cutover.guest.select import GuestOptions, check_matches
from cutover.site import ChassisEndpoint, Site, VmSpec

VM = VmSpec(name="vm1", lsp="p-vm1", mac="52:54:00:00:00:01", ip="10.99.0.1",
            chassis="hv1", tap="pt-vm1")


# --- image -----------------------------------------------------------------------------

def test_abi_from_debian_12_and_13_metapackages() -> None:
    assert parse_abi("linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n") == "6.1.0-57"
    d13 = "linux-image-amd64\n  Depends: linux-image-6.12.48+deb13-amd64\n"
    assert parse_abi(d13) == "6.12.48+deb13"


def test_abi_missing_says_what_to_run() -> None:
    with pytest.raises(PrerequisiteError, match="apt-get update"):
        parse_abi("W: Unable to locate package linux-image-amd64\n")


def test_vmlinux_is_cut_out_of_an_xz_bzimage() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 4
    bz = b"MZ-setup-code" + b"\0" * 100 + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"tail"
    assert extract_vmlinux(bz) == elf
    assert extract_vmlinux(b"MZ no xz in here") is None
    not_elf = b"x" + lzma.compress(b"plain data", format=lzma.FORMAT_XZ)
    assert extract_vmlinux(not_elf) is None


# --- initramfs -------------------------------------------------------------------------

def test_module_depends_read_from_modinfo() -> None:
    ko = b"\x7fELF...\x00license=GPL\x00depends=virtio,virtio_ring\x00intree=Y\x00"
    assert module_depends(ko) == ["virtio", "virtio_ring"]
    assert module_depends(b"\x00depends=\x00name=virtio_ring\x00") == []
    assert module_depends(b"\x00depends=net-failover\x00") == ["net_failover"]


def test_load_order_puts_dependencies_first_once() -> None:
    deps = {
        "virtio_net": ["net_failover", "virtio", "virtio_ring"],
        "net_failover": ["failover"],
        "virtio_pci": ["virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio",
                       "virtio_ring"],
        "virtio": [], "virtio_ring": [], "failover": [],
        "virtio_pci_modern_dev": [], "virtio_pci_legacy_dev": [],
    }
    order = load_order(["virtio_pci", "virtio_net"], lambda m: deps[m])
    assert sorted(order) == sorted(deps) and len(order) == len(set(order))
    for mod, needs in deps.items():
        assert all(order.index(n) < order.index(mod) for n in needs)


def test_load_order_refuses_a_cycle() -> None:
    with pytest.raises(PrerequisiteError, match="a -> b -> a"):
        load_order(["a"], lambda m: {"a": ["b"], "b": ["a"]}[m])


def test_newc_archive_round_trip() -> None:
    files = {"bin": (0o040755, b""), "bin/busybox": (0o100755, b"\x7fELFbb"),
             "bin/sh": (0o120777, b"busybox"), "init": (0o100755, b"#!/bin/sh\n")}
    data = newc_archive(files)
    parsed, pos = [], 0
    while True:
        hdr = data[pos:pos + 110]
        assert hdr[:6] == b"070701"
        fields = [int(hdr[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[pos + 110: pos + 110 + namesize - 1].decode()
        pos += (110 + namesize + 3) & ~3
        body = data[pos:pos + size]
        pos += (size + 3) & ~3
        if name == "TRAILER!!!":
            break
        parsed.append((name, mode, body))
    assert parsed == [(n, m, b) for n, (m, b) in files.items()]
    assert pos == len(data)


def test_recipe_id_is_stable() -> None:
    assert recipe_id() == recipe_id() and len(recipe_id()) == 12


# --- QMP -------------------------------------------------------------------------------

def test_event_time_is_qemus_own_wall_clock_in_ms() -> None:
    ev = {"event": "STOP", "timestamp": {"seconds": 1764480000, "microseconds": 123456}}
    assert event_ms(ev) == pytest.approx(1764480000123.456)
    with pytest.raises(GuestError, match="timestamp"):
        event_ms({"event": "STOP"})


def test_migration_event_filter() -> None:
    pre = {"event": "MIGRATION", "data": {"status": "pre-switchover"}}
    match = is_migration({"pre-switchover", "failed"})
    assert match(pre)
    assert not match({"event": "MIGRATION", "data": {"status": "active"}})
    assert not match({"event": "STOP"})


def test_migration_figures_from_query_migrate() -> None:
    info = {"status": "completed", "total-time": 462, "downtime": 7, "setup-time": 0,
            "ram": {"transferred": 64790000, "mbps": 1124.7, "dirty-sync-count": 3}}
    assert migration_figures(info) == {
        "status": "completed", "total_ms": 462.0, "downtime_ms": 7.0, "setup_ms": 0.0,
        "ram_transferred_mb": 61.789, "ram_mbps": 1124.7, "dirty_sync_count": 3}
    failed = migration_figures({"status": "failed", "error-desc": "Unable to write"})
    assert failed == {"status": "failed", "error": "Unable to write"}


# --- QEMU command line, guest options ---------------------------------------------------

def test_qemu_argv_attaches_to_the_tap_and_differs_only_by_incoming() -> None:
    img = GuestImage("6.1.0-57", Path("/c/vmlinux"), Path("/c/initrd.gz"))
    files = QemuFiles(Path("/tmp/cutover/p/guests"), "vm1", "hv2")
    src = qemu_argv(img, VM, files, 128)
    dst = qemu_argv(img, VM, files, 128, incoming=True)
    assert dst == [*src, "-incoming", "defer"]
    assert "tap,id=n0,ifname=pt-vm1,script=no,downscript=no" in src
    nic = src[src.index("-device") + 1]
    assert nic.startswith("virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,")
    assert src[src.index("-m") + 1] == "128" and src[src.index("-accel") + 1] == "tcg"
    assert "cutover.ip=10.99.0.1" in src[src.index("-append") + 1]
    assert f"unix:{files.qmp},server=on,wait=off" in src
    assert files.qmp == Path("/tmp/cutover/p/guests/vm1@hv2.qmp")


def test_qemu_argv_offers_no_guest_offloads_unless_asked() -> None:
    """Off by default, so that the destination QEMU's device-state load does not change the
    TAP's offloads (a link event that stalls the userspace vswitchd's main thread)."""
    img = GuestImage("6.1.0-57", Path("/c/vmlinux"), Path("/c/initrd.gz"))
    files = QemuFiles(Path("/tmp/cutover/p/guests"), "vm1", "hv2")
    argv = qemu_argv(img, VM, files, 128)
    off = argv[argv.index("-device") + 1]
    props = dict(kv.split("=") for kv in off.split(",")[1:])
    assert all(props[p] == "off" for p in ("guest_csum", "guest_tso4", "guest_tso6",
                                           "guest_ecn", "guest_ufo"))
    on = qemu_argv(img, VM, files, 128, guest_offloads=True)
    assert "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01" in on


@pytest.mark.parametrize(("value", "want"), [(None, False), ("off", False), ("on", True)])
def test_guest_offloads_env(monkeypatch: pytest.MonkeyPatch, value: str | None,
                            want: bool) -> None:
    if value is None:
        monkeypatch.delenv(OFFLOADS_ENV, raising=False)
    else:
        monkeypatch.setenv(OFFLOADS_ENV, value)
    assert guest_offloads() is want


def test_guest_offloads_env_rejects_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OFFLOADS_ENV, "yes")
    with pytest.raises(PrerequisiteError, match="use on or off"):
        guest_offloads()


@pytest.mark.parametrize(("opts", "msg"), [
    (GuestOptions("xen"), "choose one of"),
    (GuestOptions("qemu", ram_mb=16), "--guest-ram 16"),
    (GuestOptions("qemu", max_bandwidth_mib=0), "--max-bandwidth 0"),
    (GuestOptions("emulated", max_bandwidth_mib=10), "--max-bandwidth 10 caps a QEMU"),
])
def test_guest_options_are_checked(opts: GuestOptions, msg: str) -> None:
    with pytest.raises(InputError, match=msg):
        opts.checked()


def test_libvirt_guests_refuse_a_qemu_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: with CUTOVER_QEMU_ROOT set, a --guest libvirt lab recorded the root's QEMU
    and a bench's environment named it, while libvirtd ran /usr/bin's QEMU 7.2."""
    monkeypatch.setenv(qemu_proc.ROOT_ENV, "/tmp/qroot/trixie")
    with pytest.raises(InputError, match="libvirtd starts its own emulator"):
        GuestOptions("libvirt").checked()
    GuestOptions("qemu").checked()
    monkeypatch.delenv(qemu_proc.ROOT_ENV)
    GuestOptions("libvirt").checked()


def test_a_lab_refuses_another_guest_kind() -> None:
    site = Site(name="p", nb_remote="x", sb_remote="y",
                chassis=(ChassisEndpoint("hv1", "unix:/x"),), vms=(VM,),
                extra={"guest": "qemu", "guest_ram_mb": 128})
    check_matches(site, GuestOptions("qemu", 128))
    with pytest.raises(InputError, match="runs qemu guests with 128 MiB, not emulated"):
        check_matches(site, GuestOptions("emulated"))
    with pytest.raises(InputError, match="not qemu with 256 MiB"):
        check_matches(site, GuestOptions("qemu", 256))


class _Reporting:
    def last_migration(self, vm: VmSpec) -> dict[str, object]:
        return {"downtime_ms": 7.0, "total_ms": 462.0, "guest_pause_ms": 8.1, "ram_mb": 128}


def test_guest_figures_renamed_for_the_run_record() -> None:
    figs = guest_figures(_Reporting(), VM)  # type: ignore[arg-type]
    assert figs == {"qemu_downtime_ms": 7.0, "qemu_migration_ms": 462.0,
                    "guest_pause_ms": 8.1, "ram_mb": 128}
    assert guest_figures(object(), VM) == {}  # type: ignore[arg-type]


# --- report sections --------------------------------------------------------------------

def _run(strategy: str, blackout: float, stall: str = "dst:2000", **extra: float) -> RunResult:
    return RunResult(strategy=strategy, guest="qemu", stall=stall, activation="rarp",
                     load="L0", vm="vm1", src="hv1", dst="hv2", run_index=0,
                     probe_interval_ms=2.0, probes_sent=1000, probes_lost=3,
                     blackout_ms=blackout, loss_outage_ms=blackout, migration_ms=2000.0,
                     ready_wait_ms=0.0,
                     extra=dict(extra))


def test_blackout_minus_floor_per_strategy() -> None:
    runs = [_run("legacy", 2040.0), _run("legacy", 2050.0), _run("legacy", 2030.0),
            _run("claim", 30.0), _run("claim", 20.0), _run("claim", 25.0),
            _run("floor", 12.0, stall="none"), _run("floor", 10.0, stall="none"),
            _run("floor", 99.0, stall="none")]
    result = BenchResult(started_at="t", environment={}, params={}, runs=runs)
    assert floor_median(result) == 12.0
    rows = {r[0]: r for r in floor_rows(result)}
    assert set(rows) == {"legacy", "claim"}
    assert rows["legacy"][3:] == ["2040.0", "12.0", "2028.0"]
    assert rows["claim"][3:] == ["25.0", "12.0", "13.0"]
    assert "## Blackout above the floor" in guest_section(result)


def test_no_floor_no_floor_section_and_guest_medians() -> None:
    runs = [_run("claim", 30.0, guest_pause_ms=8.0, qemu_downtime_ms=3.0),
            _run("claim", 40.0, guest_pause_ms=10.0, qemu_downtime_ms=5.0),
            _run("claim", 50.0, guest_pause_ms=30.0)]
    result = BenchResult(started_at="t", environment={}, params={}, runs=runs)
    assert floor_rows(result) == [] and floor_median(result) is None
    (row,) = guest_rows(result)
    assert row[2:6] == ["3", "10.0", "4.0", "-"]
    assert row[-1] == "22.0"  # medians of 30-8, 40-10, 50-30
    section = guest_section(result)
    assert "## Blackout above the floor" not in section
    assert "## What the guest reports" in section


# --- CLI: guest options are refused before anything is built -----------------------------

@pytest.mark.parametrize(("argv", "says"), [
    (["bench", "--guest-ram", "16"], "--guest-ram"),
    (["bench", "--guest-ram", "128.5"], "whole number"),
    (["lab", "up", "--guest-ram", "99999"], "--guest-ram"),
    (["bench", "--max-bandwidth", "0"], "--max-bandwidth"),
    (["migrate", "vm1", "--to", "hv2", "--max-bandwidth", "-3"], "--max-bandwidth"),
    (["bench", "--guest", "xen"], "invalid choice"),
    (["bench", "--floor"], "--floor measures a real QEMU migration"),
    (["bench", "--max-bandwidth", "10"], "the guests are emulated"),
])
def test_bad_guest_options_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
    says: str,
) -> None:
    from cutover import cli, commands

    class NoLab:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("a refused request must not reach the lab")

    monkeypatch.setattr(commands, "Lab", NoLab)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("InputError: ") and says in err, err
    assert len(err.splitlines()) == 1


# --- libvirt domain XML -------------------------------------------------------------------

def test_domain_xml_is_novas_precreated_tap_interface() -> None:
    import xml.etree.ElementTree as ET

    from cutover.chassis.base import vm_uuid
    from cutover.guest.libvirt import domain_xml

    xml = domain_xml(VM, "cutover.guest.p-vm1", Path("/c/vmlinux"), Path("/c/initrd.gz"),
                     256, Path("/lab/vm1.serial.log"))
    dom = ET.fromstring(xml)
    assert dom.get("type") == "qemu" and dom.findtext("name") == "cutover.guest.p-vm1"
    assert dom.findtext("uuid") == vm_uuid(VM.name)  # the same instance UUID on both ends
    assert dom.findtext("memory") == "256" and dom.findtext("os/kernel") == "/c/vmlinux"
    assert "cutover.ip=10.99.0.1" in (dom.findtext("os/cmdline") or "")
    iface = dom.find("devices/interface")
    assert iface is not None and iface.get("type") == "ethernet"
    target = iface.find("target")
    assert target is not None and target.attrib == {"dev": "pt-vm1", "managed": "no"}
    mac, model = iface.find("mac"), iface.find("model")
    assert mac is not None and mac.get("address") == VM.mac
    assert model is not None and model.get("type") == "virtio"
    managed = ET.fromstring(domain_xml(VM, "n", Path("/k"), Path("/i"), 128, Path("/s"),
                                       managed_tap=True))
    t2 = managed.find("devices/interface/target")
    assert t2 is not None and t2.attrib == {"dev": "pt-vm1"}
    guest = iface.find("driver/guest")
    assert guest is not None and guest.attrib == {
        "csum": "off", "tso4": "off", "tso6": "off", "ecn": "off", "ufo": "off"}
    with_offloads = ET.fromstring(domain_xml(VM, "n", Path("/k"), Path("/i"), 128,
                                             Path("/s"), guest_offloads=True))
    assert with_offloads.find("devices/interface/driver") is None


# --- the held copy (QEMU 7.2: query-migrate polled, bandwidth throttled in two stages) ---

MIB = 2**20


def test_hold_plan_is_sized_from_the_bandwidth_not_the_ram() -> None:
    plan = HoldPlan.for_copy(128 * MIB, 128 * MIB)  # the lab's guest at QEMU's default
    assert plan.approach_bandwidth == 32 * MIB
    assert plan.tail_bytes == int(32 * MIB * QEMU_WINDOW_S * HOLD_TAIL_SAFETY)  # 6.4 MiB
    assert plan.approach_bytes == 5 * int(128 * MIB * QEMU_WINDOW_S)  # 64 MiB: 5 bursts
    assert HoldPlan.for_copy(4096 * MIB, 128 * MIB) == plan  # a big guest: the same plan
    # a slow link: the approach keeps the bandwidth (only the polling changes), smaller tail
    slow = HoldPlan.for_copy(128 * MIB, 16 * MIB)
    assert slow.approach_bandwidth == 16 * MIB and slow.tail_bytes < plan.tail_bytes
    assert slow.approach_bytes == 5 * int(16 * MIB * QEMU_WINDOW_S) > slow.tail_bytes
    # a small guest on a fast link: one burst could sweep it all, so throttle at once
    fast = HoldPlan.for_copy(64 * MIB, 1024 * MIB)
    assert fast.approach_bytes == 64 * MIB and fast.approach_bandwidth == 32 * MIB
    with pytest.raises(ValueError, match="RAM and bandwidth"):
        HoldPlan.for_copy(0, 128 * MIB)


def test_hold_plan_stages_only_move_forward() -> None:
    plan = HoldPlan(approach_bytes=64 * MIB, approach_bandwidth=32 * MIB, tail_bytes=6 * MIB)
    assert plan.step("copy", 100 * MIB) == ("copy", None)
    assert plan.step("copy", 64 * MIB) == ("copy", None)  # strictly below the threshold
    assert plan.step("copy", 63 * MIB) == ("approach", 32 * MIB)
    assert plan.step("approach", 20 * MIB) == ("approach", None)  # set once, not re-sent
    assert plan.step("approach", 5 * MIB) == ("trickle", TRICKLE_BYTES_S)
    # a burst crossing both thresholds between two polls: trickle at once
    assert plan.step("copy", 1 * MIB) == ("trickle", TRICKLE_BYTES_S)
    # trickling stays trickling, even when a new pass reports more left
    assert plan.step("trickle", 100 * MIB) == ("trickle", None)
    with pytest.raises(ValueError, match="unknown hold stage"):
        plan.step("held", 1)
    assert HoldPlan.poll_s("copy") > HoldPlan.poll_s("approach") == HoldPlan.poll_s("trickle")


class FakeSource:
    """A source QEMU's QMP: scripted ``query-migrate`` answers, parameters recorded."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers
        self.set: list[dict[str, Any]] = []
        self.queries = 0

    def cmd(self, name: str, timeout_s: float = 10.0, **args: Any) -> Any:
        if name == "query-migrate":
            self.queries += 1
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        assert name == "migrate-set-parameters", name
        self.set.append(args)
        return {}


def _active(remaining: int) -> dict[str, Any]:
    return {"status": "active", "ram": {"remaining": remaining}}


def _held(tmp_path: Path, ram_mb: int = 128) -> tuple[QemuHypervisor, dict[str, Any]]:
    site = Site(name="p", nb_remote="x", sb_remote="y",
                chassis=(ChassisEndpoint("hv1", "unix:x"), ChassisEndpoint("hv2", "unix:y")),
                vms=(VM,), guest_dir=str(tmp_path))  # fmt: skip
    hv = QemuHypervisor(site, ram_mb=ram_mb)
    run = {"held": True, "started_ms": 1000.0, "stage": "copy", "plan": hv._hold_plan()}
    return hv, run


def test_hold_step_throttles_in_two_stages_and_records_them(tmp_path: Path) -> None:
    hv, run = _held(tmp_path)
    src = FakeSource([_active(100 * MIB), _active(60 * MIB), _active(30 * MIB),
                      _active(5 * MIB)])
    steps = [hv._hold_step(run, cast(Any, src)) for _ in range(4)]
    assert steps == [False, False, False, True]
    assert src.set == [{"max-bandwidth": 32 * MIB}, {"max-bandwidth": TRICKLE_BYTES_S}]
    assert run["stage"] == "trickle"
    assert run["approach_remaining_mb"] == 60.0 and run["trickle_remaining_mb"] == 5.0
    assert hv._hold_step(run, cast(Any, src)) and src.queries == 4  # no more QMP once held
    hv.close()


def test_hold_step_reports_a_pass_that_ended_anyway(tmp_path: Path) -> None:
    hv, run = _held(tmp_path)
    setup = FakeSource([{"status": "setup"}])
    assert not hv._hold_step(run, cast(Any, setup))
    ended = FakeSource([{"status": "pre-switchover", "ram": {"remaining": 0}}])
    assert hv._hold_step(run, cast(Any, ended))  # nothing left to hold: go on
    assert ended.set == [] and run["stage"] == "copy"  # and it was never throttled
    hv.close()


def test_hold_figures_say_when_each_stage_began_and_how_long_the_release_took(
    tmp_path: Path
) -> None:
    hv, run = _held(tmp_path)
    run.update(approach_ms=1200.0, approach_remaining_mb=60.0, trickle_ms=1800.0,
               trickle_remaining_mb=5.0, released_ms=3000.0,
               stop_ms=3055.5)  # fmt: skip
    figures = hv._hold_figures(run, resume_ms=3062.0)
    assert figures["convergence_held_ms"] == 2000.0
    assert figures["hold_approach_at_ms"] == 200.0 and figures["trickle_at_ms"] == 800.0
    assert figures["trickle_reserve_mb"] == 5.0 and figures["hold_tail_target_mb"] == 6.4
    assert figures["release_to_stop_ms"] == 55.5
    # readiness before the approach, and never released (the copy ended by itself)
    hv2, early = _held(tmp_path)
    early["stop_ms"] = 1500.0
    figures = hv2._hold_figures(early, resume_ms=1510.0)
    assert figures["hold_approach_at_ms"] is None and figures["trickle_at_ms"] is None
    assert figures["release_to_stop_ms"] is None and figures["convergence_held_ms"] == 510.0
    hv.close()
    hv2.close()


def test_qemu_from_a_root_runs_through_the_roots_loader(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """CUTOVER_QEMU_ROOT: the root's QEMU, its loader and libraries, its firmware dirs;
    a root without QEMU is refused with the way to build one."""
    monkeypatch.delenv(qemu_proc.ROOT_ENV, raising=False)
    assert qemu_proc.qemu_command() == ["qemu-system-x86_64"]
    monkeypatch.setenv(qemu_proc.ROOT_ENV, str(tmp_path))
    with pytest.raises(PrerequisiteError, match="mmdebstrap --variant=apt --include=qemu"):
        qemu_proc.qemu_command()
    for d in ("usr/bin", "lib64", "usr/share/qemu", "usr/share/seabios"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    (tmp_path / "usr/bin/qemu-system-x86_64").touch()
    (tmp_path / "lib64/ld-linux-x86-64.so.2").touch()
    argv = qemu_proc.qemu_command()
    assert argv[0] == str(tmp_path / "lib64/ld-linux-x86-64.so.2")
    assert argv[3] == str(tmp_path / "usr/bin/qemu-system-x86_64")
    assert argv[4:] == ["-L", str(tmp_path / "usr/share/qemu"),
                        "-L", str(tmp_path / "usr/share/seabios")]


def test_a_relative_qemu_root_gives_an_absolute_command(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: ``CUTOVER_QEMU_ROOT=qroot/trixie`` gave a relative loader, library path and
    QEMU, recorded so by the lab: a later command with the same setting from another
    directory passed the record check and then could not start its QEMU."""
    for d in ("usr/bin", "lib64", "usr/share/qemu", "usr/share/seabios"):
        (tmp_path / "root" / d).mkdir(parents=True, exist_ok=True)
    (tmp_path / "root/usr/bin/qemu-system-x86_64").touch()
    (tmp_path / "root/lib64/ld-linux-x86-64.so.2").touch()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(qemu_proc.ROOT_ENV, "root")
    argv = qemu_proc.qemu_command()
    assert argv[0] == str(tmp_path / "root/lib64/ld-linux-x86-64.so.2")
    assert argv[3] == str(tmp_path / "root/usr/bin/qemu-system-x86_64")
    assert all(Path(p).is_absolute() for p in argv[2].split(":"))


def test_a_lab_refuses_another_qemu_than_its_guests_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: a bench with CUTOVER_QEMU_ROOT set on a lab whose guests ran the host's QEMU
    started QEMU 10 destinations for QEMU 7.2 sources; each died in the pre-copy."""
    monkeypatch.delenv(qemu_proc.ROOT_ENV, raising=False)
    monkeypatch.delenv(OFFLOADS_ENV, raising=False)
    recorded = qemu_proc.lab_record()
    qemu_proc.check_lab_record(recorded)  # the same: fine
    qemu_proc.check_lab_record(None)  # a lab from before the record: nothing to check
    monkeypatch.setenv(OFFLOADS_ENV, "on")
    with pytest.raises(PrerequisiteError, match="started with CUTOVER_QEMU_GUEST_OFFLOADS=off, "
                       "this command has CUTOVER_QEMU_GUEST_OFFLOADS=on: set "
                       "CUTOVER_QEMU_GUEST_OFFLOADS=off as for 'cutover lab up'"):
        qemu_proc.check_lab_record(recorded)
    monkeypatch.delenv(OFFLOADS_ENV)
    monkeypatch.setenv(qemu_proc.ROOT_ENV, "/nonexistent-root")
    with pytest.raises(PrerequisiteError, match="CUTOVER_QEMU_ROOT"):
        qemu_proc.check_lab_record(recorded)


def test_another_qemu_is_refused_with_the_setting_to_use(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: the refusal printed both QEMU command lines (loader, library path, firmware
    dirs) and "set CUTOVER_QEMU_ROOT as it was", not what it was. It names the setting."""
    for d in ("usr/bin", "lib64", "usr/share/qemu", "usr/share/seabios"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    (tmp_path / "usr/bin/qemu-system-x86_64").touch()
    (tmp_path / "lib64/ld-linux-x86-64.so.2").touch()
    monkeypatch.delenv(OFFLOADS_ENV, raising=False)
    monkeypatch.delenv(qemu_proc.ROOT_ENV, raising=False)
    host_lab = qemu_proc.lab_record()
    monkeypatch.setenv(qemu_proc.ROOT_ENV, str(tmp_path))
    root_lab = qemu_proc.lab_record()
    with pytest.raises(PrerequisiteError) as e:
        qemu_proc.check_lab_record(host_lab)
    assert str(e.value) == (
        f"the lab's QEMU guests were started with CUTOVER_QEMU_ROOT unset, this command has "
        f"CUTOVER_QEMU_ROOT={tmp_path}: unset CUTOVER_QEMU_ROOT as for 'cutover lab up' (or "
        "rebuild the lab with 'cutover lab down')")
    monkeypatch.delenv(qemu_proc.ROOT_ENV)
    with pytest.raises(PrerequisiteError, match=f"started with CUTOVER_QEMU_ROOT={tmp_path}, "
                       f"this command has CUTOVER_QEMU_ROOT unset: set "
                       f"CUTOVER_QEMU_ROOT={tmp_path} as for"):
        qemu_proc.check_lab_record(root_lab)


def test_lab_up_refuses_a_bad_qemu_setting_before_building(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: ``CUTOVER_QEMU_ROOT=/nonexistent cutover lab up`` built the central servers,
    every chassis and the agents (~5 s), failed when the site was written and tore it all
    down again. The lab's QEMU settings are checked with the other prerequisites."""
    from cutover.lab import host
    from cutover.lab.lab import Lab
    from cutover.lab.topology import LabTopology

    def no_build(*_args: object) -> None:
        raise AssertionError("a bad QEMU setting must be refused before the lab is built")

    monkeypatch.setattr(host, "check_prerequisites", lambda _install: None)
    monkeypatch.setattr(Lab, "_build", no_build)
    monkeypatch.setattr(Lab, "down", no_build)
    lab = Lab(LabTopology(prefix="cqr", lab_dir=tmp_path / "lab"))
    monkeypatch.setenv(qemu_proc.ROOT_ENV, str(tmp_path / "missing"))
    with pytest.raises(PrerequisiteError, match="CUTOVER_QEMU_ROOT"):
        lab.up()
    monkeypatch.delenv(qemu_proc.ROOT_ENV)
    monkeypatch.setenv(OFFLOADS_ENV, "maybe")
    with pytest.raises(PrerequisiteError, match=OFFLOADS_ENV):
        lab.up()
    assert not (tmp_path / "lab").exists()
