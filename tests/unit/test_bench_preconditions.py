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


def now() -> float:
    return time.time() * 1000.0


def test_a_good_baseline_passes() -> None:
    check_baseline(ProbeStatus("sending", 150, 148, now() - 1.0), VM, CLIENT)


@pytest.mark.parametrize(
    ("sent", "received", "ago_ms", "match"),
    [
        (150, 0, None, "0 of 150 probes answered, last reply never"),
        (150, 60, 0.0, "60 of 150"),
        (150, 149, 5000.0, "last reply 5"),
        (3, 3, 0.0, "sent only 3 probes"),
    ],
)
def test_no_baseline_fails(sent: int, received: int, ago_ms: float | None, match: str) -> None:
    last = None if ago_ms is None else now() - ago_ms
    with pytest.raises(MeasurementError, match=match):
        check_baseline(ProbeStatus("sending", sent, received, last), VM, CLIENT)


def test_an_open_silence_is_unmeasurable() -> None:
    s = summarize([(0, 0.0, 0.5), (1, 2.0, 2.5)] + [(i, 2.0 * i, None) for i in range(2, 500)],
                  2.0)  # fmt: skip
    assert s.blackout_open
    err = unmeasurable(s, VM, CLIENT)
    assert "498 of 500 probes lost" in str(err) and "unknown" in str(err)
