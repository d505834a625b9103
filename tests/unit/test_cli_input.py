"""Bad input is refused up front: one ``InputError: ...`` line, exit code 2, nothing built.

Each case would otherwise have run (or built a lab first). ``main`` parses before it checks
for root or touches anything, and the bench/migrate checks that need parsed values run
before the lab is looked up, so these run without a lab; ``Lab`` is replaced by a stub
that fails the test if anything reaches it.
"""

from __future__ import annotations

import os

import pytest

from cutover import cli, commands


class _NoLab:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a refused request must not reach the lab")


@pytest.fixture(autouse=True)
def no_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "Lab", _NoLab)
    monkeypatch.setattr(os, "geteuid", lambda: 0)


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("InputError: "), err
    return err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["migrate", "vm1", "--to", "hv2", "--copy-ms", "-100"], "--copy-ms"),
        (["migrate", "vm1", "--to", "hv2", "--copy-ms", "nan"], ">= 0"),
        (["migrate", "vm1", "--to", "hv2", "--pause-ms", "-1"], "--pause-ms"),
        (["migrate", "vm1", "--to", "hv2", "--ready-timeout", "0"], "> 0"),
        (["migrate", "vm1", "--to", "hv2", "--ready-timeout", "-1"], "--ready-timeout"),
        (["migrate", "vm1", "--to", "hv2", "--activation-timeout", "0"], "--activation-timeout"),
        (["migrate", "vm1", "--to", "hv2", "--stall", "dst"], "give a duration"),
        (["migrate", "vm1", "--to", "hv2", "--stall", "src:100"], "role must be one of"),
        (["migrate", "vm1", "--to", "hv2", "--strategy", "fast"], "invalid choice"),
        (["bench", "--runs", "0"], "--runs"),
        (["bench", "--runs", "1.5"], "whole number"),
        (["bench", "--interval-ms", "0"], "--interval-ms"),
        (["bench", "--interval-ms", "inf"], "--interval-ms"),
        (["bench", "--chassis", "2"], "--chassis"),
        (["bench", "--stall", "dst:-5"], "duration must be > 0"),
        (["lab", "up", "--chassis", "2"], "--chassis"),
        (["lab", "up", "--chassis", "x"], "not a number"),
        (["migrate", "vm1"], "--to"),
        (["bench", "--fault", "sb-crash"], "choose one of"),
        (["bench", "--fault", "sb-pause:0"], "must be > 0"),
        (["bench", "--fault", "northd-pause:5s"], "not a number"),
        (["--prefix", "cofnolab", "bench", "--fault", "sb-leader-kill"], "--clustered"),
    ],
)
def test_bad_options_are_refused_while_parsing(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert says in refused(capsys, *argv)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["bench", "--matrix", "--load", "L2"], "--matrix sets the loads"),
        (["bench", "--strategy", "claim", "--strategy", "claim"], "strategy given twice"),
        (["bench", "--stall", "dst:2000", "--stall", "dst:2000.0"], "condition given twice"),
    ],
)
def test_bad_combinations_are_refused_before_any_lab(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert says in refused(capsys, *argv)


def test_an_output_path_that_is_a_file_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: os.PathLike[str]
) -> None:
    path = os.path.join(tmp_path, "bench.json")
    with open(path, "w") as f:
        f.write("{}")
    assert "is a file" in refused(capsys, "bench", "--out", path)


def test_errors_print_brackets_literally(capsys: pytest.CaptureFixture[str]) -> None:
    """rich markup must not eat SB state such as ``additional_chassis=[hv2]``."""
    from cutover.errors import WaitTimeout

    cli._print_error(WaitTimeout("the claim", 0.5, "additional_chassis=[hv2] [bold]x[/]"))
    assert "additional_chassis=[hv2] [bold]x[/]" in capsys.readouterr().err


def test_timeline_details_print_brackets_literally() -> None:
    import io

    from rich.console import Console

    table = commands.timeline_table([(1.0, "path-ready.seen", "peers [hv3, hv4] ready")], "vm1 [x]")
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "peers [hv3, hv4] ready" in text and "vm1 [x]" in text


def test_a_peer_stall_must_stall_a_third_party() -> None:
    """--stall peer:MS used to stall the destination when the site has no probe client
    (migrate --config) or the client sits on the destination, and call it the peer."""
    from cutover.commands import _check_peer_stall
    from cutover.errors import InputError
    from cutover.site import ChassisEndpoint, Site, VmSpec

    chassis = tuple(ChassisEndpoint(f"hv{i}", f"unix:/x{i}") for i in (1, 2, 3))
    vm = VmSpec("vm1", "p-vm1", "02:00:00:00:00:01", "10.0.0.1", "hv1", "tvm1")
    client = VmSpec("client", "p-client", "02:00:00:00:00:09", "10.0.0.9", "hv3", "tcl")
    lab = Site(name="p", nb_remote="x", sb_remote="y", chassis=chassis, vms=(vm,),
               clients=(client,))
    _check_peer_stall(lab, "vm1", "hv2", "peer:2000")  # hv3 is a third party
    with pytest.raises(InputError, match="client's chassis hv3, which is this migration's "
                       "destination"):
        _check_peer_stall(lab, "vm1", "hv3", "peer:2000")
    configured = Site(name="az1", nb_remote="x", sb_remote="y", chassis=chassis, vms=(vm,))
    with pytest.raises(InputError, match="site az1 has no probe client: use dst:MS"):
        _check_peer_stall(configured, "vm1", "hv2", "peer:2000")


def test_a_bad_verdict_channel_is_refused_before_the_bench_builds_a_lab(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: with CUTOVER_VERDICT_CHANNEL=garbage a bench on no lab built the whole lab
    first (its agents plug the lab's ports: refused there, torn down again)."""
    monkeypatch.setenv("CUTOVER_VERDICT_CHANNEL", "garbage")
    assert "CUTOVER_VERDICT_CHANNEL='garbage'" in refused(capsys, "bench", "--runs", "1")


def test_a_failed_migration_is_not_hidden_by_a_stall_that_cannot_be_resumed(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: ``migrate --stall dst:5000`` with the destination's agent killed in the wait
    printed only ``LabError: could not resume ovn-controller at hv2 ...`` (the stall's
    resume, in a finally) and not why the migration failed or what it left. The
    migration's error is printed, the failed resume after it on the same line."""
    import contextlib
    from collections.abc import Iterator

    from cutover.bench.faults import StallPlan
    from cutover.errors import LabError, MigrationError
    from cutover.migration.clients import SiteClients
    from cutover.site import ChassisEndpoint, Site, VmSpec

    site = Site("t", "unix:/nb", "unix:/sb",
                tuple(ChassisEndpoint(f"hv{i}", f"unix:/hv{i}") for i in (1, 2, 3)),
                (VmSpec("vm1", "p-vm1", "02:00:00:00:00:01", "10.0.0.1", "hv1", "t-vm1"),),
                clients=(VmSpec("client", "p-c", "02:00:00:00:00:64", "10.0.0.100", "hv3",
                                "t-c"),))  # fmt: skip

    class FakeLab:
        def __init__(self, *_args: object) -> None: ...
        def site(self) -> Site:
            return site
        def save_site(self, _site: Site) -> None: ...

    class Clients:
        def __init__(self) -> None:
            self.chassis = {c.name: object() for c in site.chassis}

    class Stuck:
        def finish(self) -> None:
            raise LabError("could not resume ovn-controller at hv2: agent of hv2 is dead")

    @contextlib.contextmanager
    def no_guests(*_args: object, **_kwargs: object) -> Iterator[None]:
        yield None

    def fails(*_args: object, **_kwargs: object) -> None:
        raise MigrationError("migration of 'vm1' failed in step 'wait-ready'; left: TAP")

    monkeypatch.setattr(commands, "Lab", FakeLab)
    monkeypatch.setattr(SiteClients, "connect", staticmethod(lambda _s: Clients()))
    monkeypatch.setattr(StallPlan, "injector", lambda *_a, **_k: Stuck())
    monkeypatch.setattr(commands, "guest_driver", no_guests)
    monkeypatch.setattr(commands, "run_migration", fails)
    assert cli.main(["migrate", "vm1", "--to", "hv2", "--stall", "dst:5000"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("MigrationError: migration of 'vm1' failed in step 'wait-ready'; left: TAP; "
                   "also: LabError: could not resume ovn-controller at hv2: agent of hv2 is "
                   "dead")
