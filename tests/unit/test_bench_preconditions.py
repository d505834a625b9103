"""Run preconditions: a run that cannot measure fails with a clear error (fakes only)."""

from __future__ import annotations

import time

import pytest

from cutover.bench.preconditions import check_baseline, check_site, unmeasurable
from cutover.errors import MeasurementError
from cutover.ovsdb.sb import BindingState, SbClient
from cutover.probe.analysis import summarize
from cutover.probe.client import ProbeStatus
from cutover.site import VmSpec

VM = VmSpec("vm1", "ls-vm1", "02:00:00:00:00:01", "10.0.0.1", "hv1", "tvm1")
CLIENT = VmSpec("client", "ls-client", "02:00:00:00:00:09", "10.0.0.9", "hv3", "tcl")


class FakeSb:
    def __init__(self, **bound: tuple[str | None, tuple[str, ...]]) -> None:
        self.bound = bound

    def binding(self, lsp: str) -> BindingState | None:
        if lsp not in self.bound:
            return None
        chassis, additional = self.bound[lsp]
        return BindingState(lsp, chassis, additional, chassis, (), True, ())


def sb(**bound: tuple[str | None, tuple[str, ...]]) -> SbClient:
    return FakeSb(**bound)  # type: ignore[return-value]


GOOD = {"ls-vm1": ("hv1", ()), "ls-client": ("hv3", ())}


def test_a_site_that_matches_the_sb_passes() -> None:
    check_site(sb(**GOOD), VM, CLIENT, "hv2")


@pytest.mark.parametrize(
    ("bound", "dst", "match"),
    [
        ({**GOOD, "ls-client": ("hv2", ())}, "hv2", "should be bound to hv3"),
        ({**GOOD, "ls-vm1": ("hv2", ())}, "hv2", "should be bound to hv1"),
        ({**GOOD, "ls-vm1": ("hv1", ("hv2",))}, "hv2", "earlier migration did not finish"),
        ({"ls-client": ("hv3", ())}, "hv2", "no SB Port_Binding for ls-vm1"),
        (GOOD, "hv3", "must probe from a third chassis"),
    ],
)
def test_a_site_that_does_not_match_the_sb_fails(
    bound: dict[str, tuple[str | None, tuple[str, ...]]], dst: str, match: str
) -> None:
    with pytest.raises(MeasurementError, match=match):
        check_site(sb(**bound), VM, CLIENT, dst)


def test_a_steady_baseline_passes() -> None:
    check_baseline(150, ProbeStatus("sending", 200, 199, time.time() * 1000.0), VM, CLIENT, 10)


@pytest.mark.parametrize(
    ("received", "last", "match"),
    [
        (0, None, "0 of 150 answered, last reply never"),
        (60, 0.0, "60 of 150"),
    ],
)
def test_no_steady_baseline_fails(received: int, last: float | None, match: str) -> None:
    status = ProbeStatus("sending", 150, received,
                         None if last is None else time.time() * 1000.0 - last)
    with pytest.raises(MeasurementError, match=match) as err:
        check_baseline(None, status, VM, CLIENT, 10)
    assert "50 probes in a row within 10 s" in str(err.value)


def test_an_open_silence_is_unmeasurable() -> None:
    s = summarize([(0, 0.0, 0.5), (1, 2.0, 2.5)] + [(i, 2.0 * i, None) for i in range(2, 500)],
                  2.0)  # fmt: skip
    assert s.blackout_open
    err = unmeasurable(s, VM, CLIENT)
    assert "498 of 500 probes lost" in str(err) and "unknown" in str(err)
