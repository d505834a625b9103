"""Blackout analysis of probe samples: loss windows, gaps between replies, open windows."""

from __future__ import annotations

import pytest

from cutover.errors import InputError
from cutover.probe.analysis import LossWindow, summarize


def answered(seq: int, rtt: float = 0.5) -> tuple[int, float, float | None]:
    """Probe ``seq`` sent at 2 ms intervals and answered ``rtt`` ms later."""
    return (seq, 1000.0 + 2.0 * seq, 1000.0 + 2.0 * seq + rtt)


def lost(seq: int) -> tuple[int, float, float | None]:
    return (seq, 1000.0 + 2.0 * seq, None)


def test_no_loss_means_no_blackout() -> None:
    s = summarize([answered(i) for i in range(10)], 2.0)
    assert (s.probes_sent, s.probes_lost, s.blackout_ms, s.windows) == (10, 0, 0.0, ())
    assert s.interval_ms == 2.0 and s.loss_ratio == 0.0


def test_empty_capture() -> None:
    s = summarize([], 2.0)
    assert (s.probes_sent, s.probes_lost, s.blackout_ms, s.windows) == (0, 0, 0.0, ())


def test_gap_is_measured_between_replies_around_the_run() -> None:
    probes = [answered(0), answered(1, rtt=0.25), lost(2), lost(3), lost(4), answered(5, rtt=3.0)]
    s = summarize(probes, 2.0)
    # last reply before: 1002.25; first reply after: 1013.0
    assert s.windows == (
        LossWindow(
            first_seq=2,
            last_seq=4,
            lost=3,
            start_ms=1002.25,
            end_ms=1013.0,
            gap_ms=10.75,
            open=False,
        ),
    )
    assert s.blackout_ms == 10.75
    assert s.probes_lost == 3


def test_blackout_is_the_largest_window_not_the_sum() -> None:
    probes = [answered(0), lost(1), answered(2), lost(3), lost(4), lost(5), answered(6), lost(7)]
    probes.append(answered(8))
    s = summarize(probes, 2.0)
    assert [(w.first_seq, w.last_seq, w.lost) for w in s.windows] == [
        (1, 1, 1),
        (3, 5, 3),
        (7, 7, 1),
    ]
    assert [w.gap_ms for w in s.windows] == [4.0, 8.0, 4.0]
    assert s.blackout_ms == 8.0
    assert s.probes_lost == 5
    assert s.loss_ratio == 5 / 9


def test_order_of_input_does_not_matter_and_json_lists_are_accepted() -> None:
    probes = [answered(0), lost(1), lost(2), answered(3)]
    as_json = [list(p) for p in reversed(probes)]
    assert summarize(as_json, 2.0) == summarize(probes, 2.0)


def test_open_windows_use_send_times_at_the_capture_edges() -> None:
    s = summarize([lost(0), lost(1), answered(2), answered(3), lost(4), lost(5)], 2.0)
    first, last = s.windows
    assert first == LossWindow(0, 1, 2, 1000.0, 1004.5, 4.5, True)
    # no reply after: ends at the send time of the last lost probe
    assert last == LossWindow(4, 5, 2, 1006.5, 1010.0, 3.5, True)
    assert s.blackout_ms == 4.5


def test_everything_lost_is_one_open_window() -> None:
    s = summarize([lost(i) for i in range(5)], 2.0)
    assert s.windows == (LossWindow(0, 4, 5, 1000.0, 1008.0, 8.0, True),)
    assert s.probes_lost == 5 and s.loss_ratio == 1.0


def test_reordered_replies_never_give_a_negative_gap() -> None:
    probes = [(0, 1000.0, 1009.0), (1, 1002.0, None), (2, 1004.0, 1005.0)]
    s = summarize(probes, 2.0)
    assert s.windows[0].gap_ms == 0.0
    assert s.blackout_ms == 0.0
    assert s.probes_lost == 1


def test_duplicates_are_passed_through() -> None:
    assert summarize([answered(0)], 2.0, duplicates=3).duplicates == 3


@pytest.mark.parametrize(
    "probes",
    [
        [answered(1), answered(1)],
        [(0, 1.0)],
        [("0", 1.0, None)],
        [(0, "x", None)],
        [(0, 1.0, "late")],
    ],
)
def test_bad_samples_are_input_errors(probes: list[tuple[object, ...]]) -> None:
    with pytest.raises(InputError):
        summarize(probes, 2.0)


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan")])
def test_bad_interval_is_an_input_error(interval: float) -> None:
    with pytest.raises(InputError):
        summarize([answered(0)], interval)
