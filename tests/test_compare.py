import numpy as np
import pytest

from probe import compare, stats


def repeats(*scales: float, size: int = 3000, seed: int = 1) -> list[str]:
    """A repeat per scale: SELECT 1-like latencies (lognormal around 0.5 ms), times the scale,
    the way a machine that is busier in one run stretches all of them."""
    rng = np.random.default_rng(seed)
    out = []
    for scale in scales:
        hist = stats.new_histogram()
        for value in rng.lognormal(np.log(500), 0.4, size) * scale:
            hist.record_value(int(value))
        out.append(stats.encode(hist))
    return out


def test_the_same_distribution_passes():
    result = compare.compare_ratio(repeats(1.0, 1.02, 0.98, seed=2),
                                 repeats(1.0, 0.99, 1.01, seed=3), limit=1.2)
    assert result.outcome == "pass", result.reason
    assert result.ratio.low < 1.0 < result.ratio.high and result.repeats == (3, 3)


def test_noise_between_runs_widens_the_interval_and_leaves_it_undecided():
    # The same code on a noisy runner: p99 anywhere from 0.8x to 2x from one run to the next.
    result = compare.compare_ratio(repeats(1.4, 0.9, 2.0, seed=2),
                                 repeats(0.8, 1.3, 1.0, seed=3), limit=1.2)
    assert result.outcome == "undecided", result.reason
    assert "straddles 1.2x" in result.reason
    assert result.resolution is not None and result.resolution > 1.5
    # A bootstrap over one run's samples would have called this tight; the repeats do not.
    assert result.ratio.high / result.ratio.low > 2


def test_a_real_repeated_slowdown_is_a_regression_with_its_size():
    result = compare.compare_ratio(repeats(3.0, 3.2, 2.9, seed=2),
                                 repeats(1.0, 1.1, 0.9, seed=3), limit=1.2)
    assert result.outcome == "regressed", result.reason
    assert result.ratio.low > 1.2 and min(result.per_repeat) > 1.2
    assert result.ratio.value == pytest.approx(3.0, rel=0.1)
    assert "lies above 1.2x, and so does every one of the 3 repeats" in result.reason


def test_an_interval_above_the_limit_with_a_repeat_below_says_which_rule_held_it():
    ratio = compare.Interval(1.46, 1.32, 1.65)
    result = compare._decide(ratio, (1.5, 1.1, 1.6), 1.2, 1.12, (3, 3), (1.0, 1.0, 1.0))
    assert result.outcome == "undecided"
    assert "lies above 1.2x, but repeat(s) 2 did not (1.10x)" in result.reason
    assert "straddles" not in result.reason


def test_straddles_only_when_the_interval_straddles():
    whole_above = compare._decide(compare.Interval(1.46, 1.32, 1.65), (1.5, 1.4, 1.6), 1.2,
                                  1.12, (3, 3), (1.0,))
    assert whole_above.outcome == "regressed" and "straddles" not in whole_above.reason
    across = compare._decide(compare.Interval(1.17, 1.09, 1.26), (1.1, 1.2, 1.2), 1.2, 1.07,
                             (3, 3), (1.0,))
    assert across.outcome == "undecided" and "straddles 1.2x" in across.reason


def test_one_repeat_a_side_is_not_enough_to_see_the_noise():
    result = compare.compare_ratio(repeats(1.2, seed=2), repeats(1.0, seed=3), limit=1.25)
    assert result.outcome == "undecided"
    assert "too few repeats" in result.reason


def test_one_repeat_borrows_the_other_sides_spread():
    result = compare.compare_ratio(repeats(1.0, seed=2), repeats(1.0, 1.3, 0.8, seed=3),
                                 limit=1.2)
    assert result.repeats == (1, 3) and result.resolution is not None


def test_how_many_repeats_would_resolve_a_limit():
    # an interval narrows as the square root of the repeats
    assert compare.repeats_to_resolve(1.9, 3, 1.2) == 38
    assert compare.repeats_to_resolve(1.1, 3, 1.2) == 1  # already fine enough


def runs_of(*means: float, seed: int = 5) -> tuple[list[str], list[str]]:
    """A baseline of several runs, three repeats each around each run's own scale: the
    minute a run happened to meet moves all of its repeats alike."""
    encoded, runs = [], []
    for n, mean in enumerate(means):
        encoded += repeats(mean * 0.97, mean, mean * 1.03, seed=seed + n)
        runs += [f"run-{n}"] * 3
    return encoded, runs


def test_a_lucky_baseline_run_no_longer_fails_unchanged_code():
    # One tight, quick run as the baseline: an ordinary run 1.5x slower, just as tight,
    # reads as a regression when the repeats of one run are the unit...
    lucky = repeats(0.98, 1.0, 1.02, seed=3)
    ordinary = repeats(1.47, 1.5, 1.53, seed=2)
    assert compare.compare_ratio(ordinary, lucky, limit=1.2).outcome == "regressed"
    # ...but not against a baseline of runs that met quiet and busy minutes alike.
    encoded, runs = runs_of(1.0, 1.6, 1.2, 0.9, 1.4)
    result = compare.compare_ratio(ordinary, encoded, 1.2, runs)
    assert result.runs == 5 and result.outcome != "regressed", result.reason
    assert "5 runs of the baseline" in result.reason


def test_a_slowdown_beyond_the_noise_between_runs_is_still_regressed():
    encoded, runs = runs_of(1.0, 1.15, 0.9, 1.05, 0.95)
    result = compare.compare_ratio(repeats(3.0, 3.1, 2.9, seed=9), encoded, 1.2, runs)
    assert result.outcome == "regressed", result.reason
    assert result.ratio.low > 1.2 and 2.5 < result.ratio.value < 3.5


def test_fewer_runs_than_needed_keep_the_repeats_as_the_unit():
    encoded, runs = runs_of(1.0, 1.1)
    result = compare.compare_ratio(repeats(1.0, 1.02, 0.98, seed=2), encoded, 1.2, runs)
    assert result.runs == 1 and result.repeats == (3, 6)
