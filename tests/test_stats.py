import pytest

from probe import stats
from probe.model import SleepRound


def test_merge_is_exact_not_an_average_of_percentiles():
    fast, slow = stats.new_histogram(), stats.new_histogram()
    for _ in range(990):
        fast.record_value(100)  # 0.1 ms
    for _ in range(10):
        slow.record_value(50_000)  # 50 ms
    merged = stats.merge([stats.encode(fast), stats.encode(slow)])
    summary = stats.latency_summary(merged)
    assert summary.count == 1000
    assert summary.p50 == pytest.approx(0.1, rel=0.01)
    assert summary.p999 == pytest.approx(50, rel=0.01)
    assert summary.p99 == pytest.approx(0.1, rel=0.01)  # 99% of the samples are fast


def test_microsecond_resolution_survives_encoding():
    hist = stats.new_histogram()
    for value in (137, 241, 389):
        hist.record_value(value)
    summary = stats.latency_summary(stats.decode(stats.encode(hist)))
    assert summary.max == pytest.approx(0.389, abs=0.001)
    assert stats.decode("").get_total_count() == 0


def test_recorded_values_come_back_with_their_counts():
    hist = stats.new_histogram()
    for value, n in ((100, 3), (5000, 2)):
        for _ in range(n):
            hist.record_value(value)
    values, counts = stats.values_us(hist)
    assert sum(counts) == 5 and dict(zip(values, counts, strict=True))[100] == 3


def test_cpu_burn_leaves_out_the_time_spent_waiting_for_a_cpu():
    assert stats.burn_ratio(SleepRound(wall_s=0.1, cpu_s=0.05, runq_s=0.05)) == 1.0
    assert stats.burn_ratio(SleepRound(wall_s=0.1, cpu_s=0.01)) == pytest.approx(0.1)


def test_a_staircase_of_waits_is_recognised_and_a_pile_of_short_ones_is_not():
    stairs, pile = stats.new_histogram(), stats.new_histogram()
    for k in range(1, 16):
        stairs.record_value(k * 5500 + (k % 3) * 300)  # ~5.5 ms more for each waiter
    for v in (100, 120, 90, 3000, 150, 110, 80, 95):
        pile.record_value(v)
    assert stats.staircase_step(stairs) == pytest.approx(5.5, rel=0.15)
    assert stats.staircase_step(pile) is None
