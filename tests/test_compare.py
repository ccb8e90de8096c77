import numpy as np

from probe import compare, stats


def repeats(scale: float, n: int = 3, size: int = 3000, seed: int = 1) -> list[str]:
    """n repeats of SELECT 1-like latencies (lognormal around 0.5 ms), times `scale`."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        hist = stats.new_histogram()
        for value in rng.lognormal(np.log(500), 0.4, size) * scale:
            hist.record_value(int(value))
        out.append(stats.encode(hist))
    return out


def test_the_same_distribution_passes():
    result = compare.compare_p99(repeats(1.0, seed=2), repeats(1.0, seed=3), limit=1.2)
    assert result.outcome == "pass", result.reason
    assert result.ratio.low < 1.0 < result.ratio.high + 0.1


def test_a_real_repeated_slowdown_is_a_regression():
    result = compare.compare_p99(repeats(2.0, seed=2), repeats(1.0, seed=3), limit=1.2)
    assert result.outcome == "regressed"
    assert result.ratio.low > 1.2 and min(result.per_repeat) > 1.2
    assert "every one of 3 repeat(s)" in result.reason


def test_one_noisy_repeat_never_fails_the_build():
    noisy = repeats(1.0, n=2, seed=2) + repeats(3.0, n=1, seed=9)
    result = compare.compare_p99(noisy, repeats(1.0, seed=3), limit=1.2)
    assert result.outcome != "regressed", result.reason


def test_an_interval_across_the_limit_says_how_many_repeats_would_decide():
    result = compare.compare_p99(repeats(1.2, n=1, size=400, seed=2),
                                 repeats(1.0, n=1, size=400, seed=3), limit=1.25)
    assert result.outcome == "inconclusive"
    assert "repeat" in result.reason
