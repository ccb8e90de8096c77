import pytest

from probe import stats
from probe.messages import SleepRound


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


def test_a_staircase_with_odd_steps_is_still_one_and_random_waits_are_not():
    # Turns on a loaded machine: four of them preempted (a doubled step), the rest uneven.
    noisy = [11.0, 25.1, 50.3, 60.3, 69.5, 98.6, 126.8, 136.8, 145.2, 155.5, 186.1, 197.1,
             219.9, 233.1, 254.9]
    # Waiters arriving at random times: exponential gaps, no turns.
    random = [0.8, 3.1, 3.9, 9.5, 10.2, 18.0, 19.1, 31.7, 33.0, 40.2, 61.5, 63.0, 90.4, 140.2]
    found = {}
    for name, waits in (("noisy", noisy), ("random", random)):
        hist = stats.new_histogram()
        for w in waits:
            hist.record_value(round(w * 1000))
        found[name] = stats.staircase_step(hist)
    assert found["noisy"] == pytest.approx(12.0, rel=0.2)
    assert found["random"] is None
