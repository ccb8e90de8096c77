import pytest

from probe import stats


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
    assert summary.avg == pytest.approx(0.2557, abs=0.001)


def test_empty_histogram_summarises_to_zero_count():
    assert stats.latency_summary(stats.new_histogram()).count == 0
    assert stats.lag_summary(stats.new_histogram()).samples == 0


def test_median():
    assert stats.median([3, 1, 2]) == 2
    assert stats.median([4, 1, 2, 3]) == 2.5
    with pytest.raises(ValueError):
        stats.median([])
