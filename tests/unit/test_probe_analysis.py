"""Blackout analysis on synthetic captures: late, reordered, duplicated and lost replies,
delay spikes, and silences at the capture edges (docs/metrics.md)."""

from __future__ import annotations

import pytest

from cutover.errors import InputError
from cutover.probe.analysis import LossRun, Silence, summarize

T0 = 1000.0


def answered(seq: int, rtt: float = 0.5) -> tuple[int, float, float | None]:
    """Probe ``seq`` sent at 2 ms intervals and answered ``rtt`` ms later."""
    return (seq, T0 + 2.0 * seq, T0 + 2.0 * seq + rtt)


def lost(seq: int) -> tuple[int, float, float | None]:
    return (seq, T0 + 2.0 * seq, None)


def test_no_loss_gives_a_blackout_of_one_interval_and_no_outage() -> None:
    s = summarize([answered(i) for i in range(10)], 2.0)
    assert (s.probes_sent, s.probes_lost, s.loss_outage_ms, s.loss_runs) == (10, 0, 0.0, ())
    assert s.blackout_ms == 2.0  # replies arrive one interval apart
    assert s.max_rtt_ms == 0.5 and s.max_send_gap_ms == 2.0
    assert not s.blackout_open and s.loss_ratio == 0.0


def test_empty_capture() -> None:
    s = summarize([], 2.0)
    assert (s.probes_sent, s.blackout_ms, s.longest, s.max_rtt_ms) == (0, 0.0, None, None)


def test_late_reply_before_a_loss_run_does_not_shrink_the_blackout() -> None:
    """The issue's case: probe 50's reply is 800 ms late, probes 51-400 are lost. The
    client heard nothing from probe 49's reply (~98.5 ms) to probe 401's (~802.5 ms)."""
    probes = [answered(i) for i in range(50)]
    probes.append(answered(50, rtt=800.0))
    probes += [lost(i) for i in range(51, 401)]
    probes += [answered(i) for i in range(401, 450)]
    s = summarize(probes, 2.0)
    assert s.probes_lost == 350 and s.loss_outage_ms == 700.0
    assert s.blackout_ms >= 700.0
    assert s.longest == Silence(T0 + 98.5, T0 + 802.5)
    assert s.blackout_ms == pytest.approx(704.0)
    assert s.max_rtt_ms == 800.0
    assert s.loss_runs == (LossRun(51, 400, 350, T0 + 102.0, T0 + 800.0),)


def test_delay_spike_without_loss_is_a_silence() -> None:
    """Probes 10-74 queue and are all answered at T0+150 ms (as a paused guest answers its
    TAP queue after resuming): 0 lost, still 131.5 ms without any reply."""
    probes = [answered(i) for i in range(10)]
    probes += [(i, T0 + 2.0 * i, T0 + 150.0) for i in range(10, 75)]
    probes += [answered(i) for i in range(75, 90)]
    s = summarize(probes, 2.0)
    assert s.probes_lost == 0 and s.loss_outage_ms == 0.0
    assert s.blackout_ms == pytest.approx(150.0 - 18.5)
    assert s.max_rtt_ms == pytest.approx(130.0)  # probe 10, sent at T0+20


def test_reordered_replies_are_ordered_by_arrival() -> None:
    # Probe 0's reply overtakes nothing; probe 2's reply arrives before probe 0's.
    probes = [(0, T0, T0 + 9.0), (1, T0 + 2.0, None), (2, T0 + 4.0, T0 + 5.0),
              (3, T0 + 6.0, T0 + 20.0)]  # fmt: skip
    s = summarize(probes, 2.0)
    # arrivals 1005, 1009, 1020: longest silence 1009 -> 1020; the edge T0 -> 1005 is
    # not open because probe 0 was answered.
    assert s.longest == Silence(T0 + 9.0, T0 + 20.0)
    assert s.blackout_ms == 11.0 and s.probes_lost == 1


def test_input_order_does_not_matter_and_json_lists_are_accepted() -> None:
    probes = [answered(0), lost(1), lost(2), answered(3)]
    as_json = [list(p) for p in reversed(probes)]
    assert summarize(as_json, 2.0) == summarize(probes, 2.0)


def test_duplicated_replies_are_folded_and_counted() -> None:
    probes = [answered(0), answered(1, rtt=0.2), (1, T0 + 2.0, T0 + 2.9), answered(2)]
    s = summarize(probes, 2.0, duplicates=2)
    assert s.duplicates == 3  # 2 folded by the prober + 1 here
    assert s.probes_sent == 3 and s.probes_lost == 0
    # the earliest reply of probe 1 counts (T0 + 2.2), not the duplicate
    assert s.blackout_ms == pytest.approx(2.3)


def test_a_duplicate_sample_without_a_reply_does_not_hide_the_reply() -> None:
    s = summarize([answered(0), lost(1), answered(1), answered(2)], 2.0)
    assert s.probes_lost == 0 and s.duplicates == 0


def test_loss_at_the_start_is_an_open_silence() -> None:
    s = summarize([lost(0), lost(1), answered(2), answered(3)], 2.0)
    assert s.longest == Silence(T0, T0 + 4.5, open=True)
    assert s.blackout_open and s.probes_lost == 2


def test_loss_at_the_end_is_an_open_silence_up_to_the_last_send() -> None:
    probes = [answered(0), answered(1)] + [lost(i) for i in range(2, 50)]
    s = summarize(probes, 2.0)
    assert s.longest == Silence(T0 + 2.5, T0 + 98.0, open=True)
    assert s.blackout_open and s.loss_outage_ms == 96.0


def test_everything_lost_is_one_open_silence() -> None:
    s = summarize([lost(i) for i in range(5)], 2.0)
    assert s.longest == Silence(T0, T0 + 8.0, open=True)
    assert s.probes_lost == 5 and s.loss_ratio == 1.0 and s.max_rtt_ms is None


def test_blackout_is_the_longest_silence_not_the_sum() -> None:
    probes = [answered(0), lost(1), answered(2), lost(3), lost(4), lost(5), answered(6), lost(7)]
    probes.append(answered(8))
    s = summarize(probes, 2.0)
    assert [(r.first_seq, r.last_seq, r.lost) for r in s.loss_runs] == [
        (1, 1, 1), (3, 5, 3), (7, 7, 1),
    ]  # fmt: skip
    assert s.blackout_ms == 8.0 and s.loss_outage_ms == 10.0


def test_only_long_silences_are_listed_but_the_longest_always_is() -> None:
    probes = [answered(i) for i in range(5)] + [lost(i) for i in range(5, 30)]
    probes += [answered(i) for i in range(30, 35)]
    s = summarize(probes, 2.0)
    assert s.silences == (Silence(T0 + 8.5, T0 + 60.5),)
    short = summarize([answered(0), lost(1), answered(2)], 2.0)
    assert short.silences == (short.longest,)


def test_a_prober_that_fell_behind_shows_in_the_send_gap() -> None:
    probes = [answered(0), answered(1), (2, T0 + 60.0, T0 + 60.5)]
    s = summarize(probes, 2.0)
    assert s.max_send_gap_ms == 58.0 and s.blackout_ms == 58.0 and s.probes_lost == 0


@pytest.mark.parametrize(
    "probes",
    [
        [(1, T0, None), (1, T0 + 1.0, None)],  # one probe, two send times
        [(0, 1.0)],
        [("0", 1.0, None)],
        [(True, 1.0, None)],
        [(0, "x", None)],
        [(0, 1.0, "late")],
        [(0, float("nan"), None)],
        [(0, 5.0, 4.0)],  # reply before its send
    ],
)
def test_bad_samples_are_input_errors(probes: list[tuple[object, ...]]) -> None:
    with pytest.raises(InputError):
        summarize(probes, 2.0)


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_interval_is_an_input_error(interval: float) -> None:
    with pytest.raises(InputError):
        summarize([answered(0)], interval)


def test_negative_duplicates_are_an_input_error() -> None:
    with pytest.raises(InputError):
        summarize([answered(0)], 2.0, duplicates=-1)
