"""OVN installs without daemons: apt sources, symlinks inside a root, versions, options.

Pure logic on text and on small trees made in tmp dirs; nothing here needs root or OVN.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cutover import cli
from cutover.chassis.flows import BridgeFlows
from cutover.errors import InputError, LabBuildError, PrerequisiteError
from cutover.lab import apt_sources, rootfs
from cutover.lab.ovn_install import (
    OvnInstall,
    parse_ovn,
    parse_version,
    resolve_in_root,
    suite_for,
)
from cutover.lab.topology import LabTopology
from cutover.site import ChassisEndpoint, Site

DEB822 = """\
Types: deb
# a comment line inside the stanza
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
"""


def test_deb822_picks_the_archive_not_security() -> None:
    sources = apt_sources.parse_deb822(DEB822)
    assert [s.uri for s in sources] == ["http://mirror.example/debian",
                                        "http://mirror.example/debian-security"]
    assert apt_sources.debian_mirror(sources, "bookworm") == "http://mirror.example/debian"


def test_deb822_disabled_stanza_and_continuation_lines() -> None:
    text = ("Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
            "Types: deb\nURIs:\n http://a.example/debian/\nSuites: trixie\n")
    sources = apt_sources.parse_deb822(text)
    assert [s.uri for s in sources] == ["http://a.example/debian/"]
    # not the host's codename, but a plain Debian suite: still the archive (no slash)
    assert apt_sources.debian_mirror(sources, "bookworm") == "http://a.example/debian"


def test_one_line_format_with_options_and_comments() -> None:
    text = ("# deb http://commented.example/debian bookworm main\n"
            "deb-src http://src.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] https://vendor.example/apt cloud-sdk main\n"
            "deb http://m.example/debian bookworm main contrib  # trailing\n")
    sources = apt_sources.parse_one_line(text)
    assert [(s.uri, s.suites) for s in sources] == [
        ("https://vendor.example/apt", ("cloud-sdk",)),
        ("http://m.example/debian", ("bookworm",)),
    ]
    assert apt_sources.debian_mirror(sources, "bookworm") == "http://m.example/debian"


def test_no_debian_archive_is_a_prerequisite_error() -> None:
    sources = apt_sources.parse_one_line("deb https://vendor.example/apt cloud-sdk main\n")
    with pytest.raises(PrerequisiteError, match="no Debian archive"):
        apt_sources.debian_mirror(sources, "bookworm")


def test_read_sources_reads_list_and_sources_files_only(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://one.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "b.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "c.list.disabled").write_text(
        "deb http://off.example/debian bookworm main\n")
    uris = [s.uri for s in apt_sources.read_sources(tmp_path)]
    assert uris == ["http://one.example/debian", "http://mirror.example/debian",
                    "http://mirror.example/debian-security"]


def _root_with_alternatives(tmp_path: Path) -> Path:
    """A tiny root laid out like Debian's: an absolute alternatives chain, a relative
    loader link, and a link that climbs with '..'."""
    root = tmp_path / "root"
    (root / "usr/lib/openvswitch-switch").mkdir(parents=True)
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "etc/alternatives").mkdir(parents=True)
    (root / "lib64").mkdir()
    (root / "usr/lib/openvswitch-switch/ovs-vswitchd").write_text("real")
    (root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_text("loader")
    os.symlink("/etc/alternatives/ovs-vswitchd", root / "usr/sbin/ovs-vswitchd")
    os.symlink("/usr/lib/openvswitch-switch/ovs-vswitchd", root / "etc/alternatives/ovs-vswitchd")
    os.symlink("../usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
               root / "lib64/ld-linux-x86-64.so.2")
    os.symlink("../../../../../../usr/lib/openvswitch-switch/ovs-vswitchd",
               root / "usr/sbin/climber")
    return root


def test_absolute_alternatives_resolve_inside_the_root(tmp_path: Path) -> None:
    root = _root_with_alternatives(tmp_path)
    assert resolve_in_root(root, "/usr/sbin/ovs-vswitchd") == \
        root / "usr/lib/openvswitch-switch/ovs-vswitchd"
    assert resolve_in_root(root, "/lib64/ld-linux-x86-64.so.2") == \
        root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    # '..' never leaves the root
    assert resolve_in_root(root, "/usr/sbin/climber") == \
        root / "usr/lib/openvswitch-switch/ovs-vswitchd"


def test_dangling_or_looping_links_are_build_errors(tmp_path: Path) -> None:
    root = _root_with_alternatives(tmp_path)
    os.symlink("/nowhere", root / "usr/sbin/dangling")
    os.symlink("/usr/sbin/loop", root / "usr/sbin/loop")
    with pytest.raises(LabBuildError, match="does not exist"):
        resolve_in_root(root, "/usr/sbin/dangling")
    with pytest.raises(LabBuildError, match="too many symlinks"):
        resolve_in_root(root, "/usr/sbin/loop")


def test_root_argv_uses_the_root_loader_and_binary(tmp_path: Path) -> None:
    root = _root_with_alternatives(tmp_path)
    install = OvnInstall("25.03", root)
    argv = install.argv("ovs-vswitchd")
    assert argv[0] == str(root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    assert argv[1] == "--library-path"
    assert argv[2].split(":") == [str(root / "usr/lib/x86_64-linux-gnu"),
                                  str(root / "lib/x86_64-linux-gnu")]
    assert argv[3] == str(root / "usr/lib/openvswitch-switch/ovs-vswitchd")
    assert install.schema("nb") == str(root / "usr/share/ovn/ovn-nb.ovsschema")
    with pytest.raises(PrerequisiteError, match="ovn-northd is not in the OVN root"):
        install.argv("ovn-northd")
    assert "ovn-northd" in install.missing()
    assert OvnInstall().schema("vswitch") == "/usr/share/openvswitch/vswitch.ovsschema"


@pytest.mark.parametrize(("text", "version"), [
    ("ovs-vswitchd (Open vSwitch) 3.5.0\nDPDK 24.11.1\n", "3.5.0"),
    ("ovn-controller 26.03.1\nOpen vSwitch Library 4.0.0\n", "26.03.1"),
    ("\novsdb-server (Open vSwitch) 3.1.0\n", "3.1.0"),
    ("ovn-northd 23.03.1-dirty\n", "23.03.1"),
    ("ovn-northd\n", None),
])
def test_parse_version(text: str, version: str | None) -> None:
    assert parse_version(text) == version


def test_ovn_choices_and_suites() -> None:
    assert suite_for("host") is None
    assert suite_for("25.03") == "trixie"
    assert suite_for("26.03") == "sid"
    with pytest.raises(InputError, match=r"choose one of host, 25\.03, 26\.03"):
        parse_ovn("24.99")
    with pytest.raises(InputError):
        LabTopology(prefix="ovx", ovn="trixie")
    assert LabTopology(prefix="ovx", ovn="26.03").chassis[0].ovn == "26.03"


def test_mmdebstrap_argv_and_progress() -> None:
    argv = rootfs.mmdebstrap_argv("sid", Path("/c/.sid.tmp-1"), "http://m.example/debian")
    assert argv[:3] == ["mmdebstrap", "--variant=apt",
                        "--include=ovn-central,ovn-host,openvswitch-switch"]
    assert 'Acquire::Check-Valid-Until "false"' in argv[3]
    assert argv[-3:] == ["sid", "/c/.sid.tmp-1", "http://m.example/debian"]
    trixie = rootfs.mmdebstrap_argv("trixie", Path("/t"), "http://m.example/debian")
    assert not any("Valid-Until" in a for a in trixie)
    assert rootfs.phase_fraction("I: downloading packages with apt...") == 0.25
    assert rootfs.phase_fraction("Get:1 something") is None


def test_install_for_uses_the_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CUTOVER_ROOT_CACHE", str(tmp_path))
    assert rootfs.install_for("25.03") == OvnInstall("25.03", tmp_path / "trixie")
    assert rootfs.install_for("host") == OvnInstall("host", None)
    assert not rootfs.is_complete(rootfs.install_for("26.03"))


def test_cli_rejects_a_bad_ovn_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--prefix", "ovx", "lab", "up", "--ovn", "24.99"]) == 2
    assert cli.main(["--prefix", "ovx", "bench", "--ovn", "host", "--ovn", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2
    assert err.startswith("InputError: argument --ovn: '24.99' is not available")


def test_site_round_trips_the_ofctl_command(tmp_path: Path) -> None:
    ch = ChassisEndpoint("hv1", "unix:/x/db.sock", ofctl=("/r/ld.so", "--library-path",
                                                           "/r/lib", "/r/ovs-ofctl"))
    site = Site("s", "unix:/nb", "unix:/sb", (ch, ChassisEndpoint("hv2", "unix:/y")), ())
    site.save(tmp_path / "site.json")
    loaded = Site.load(tmp_path / "site.json")
    assert loaded == site
    assert loaded.chassis[1].ofctl == ("ovs-ofctl",)
    assert BridgeFlows("/x", ofctl=ch.ofctl).ofctl == list(ch.ofctl)
    assert BridgeFlows("/x").ofctl[0].endswith("ovs-ofctl")
