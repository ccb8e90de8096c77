"""Noise-aware comparison of latency between variants, repeats and saved baselines.

A p99 from one run is one draw from a noisy machine. So a comparison gives an interval, not a
number: scipy's bootstrap resamples the recorded latencies (every repeat's HdrHistogram,
expanded back into samples) to a 95% confidence interval of the p99 ratio. A slowdown counts
as a regression only when the whole interval lies above the allowed ratio *and* every repeat
on its own is above it, so that one noisy run can never fail a build; when the interval
straddles the limit the answer is "inconclusive", with an estimate of how many repeats would
decide it (an interval narrows as the square root of the data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scistats

from probe import stats

RESAMPLES = 1000
CONFIDENCE = 0.95
MAX_REPEATS_SUGGESTED = 50


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """p99 of a variant against a baseline: the ratio, its interval, and what it means."""

    outcome: str  # "pass", "regressed" or "inconclusive"
    ratio: Interval
    per_repeat: tuple[float, ...]
    limit: float
    reason: str


def samples_ms(encoded: Sequence[str]) -> np.ndarray:
    """Every recorded latency of the histograms, in ms (bucket values, 3 significant digits)."""
    values, counts = stats.values_us(stats.merge(encoded))
    return np.repeat(np.asarray(values, dtype=float) / 1000.0, counts)


def p99(samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.percentile(samples, 99, axis=axis)


def compare_p99(current: Sequence[str], baseline: Sequence[str], limit: float) -> Comparison:
    """`current` and `baseline`: one encoded histogram per repeat."""
    now, then = samples_ms(current), samples_ms(baseline)
    if len(now) < 100 or len(then) < 100:
        empty = Interval(0.0, 0.0, 0.0)
        return Comparison("inconclusive", empty, (), limit,
                          "too few recorded latencies to compare (fewer than 100)")

    def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return p99(x, axis) / p99(y, axis)

    result = scistats.bootstrap((now, then), ratio, n_resamples=RESAMPLES, vectorized=True,
                                paired=False, method="percentile", batch=50,
                                confidence_level=CONFIDENCE,
                                random_state=np.random.default_rng(0))
    interval = Interval(float(ratio(now, then)), float(result.confidence_interval.low),
                        float(result.confidence_interval.high))
    then_p99 = float(p99(then))
    repeats = [samples_ms([h]) for h in current if h]
    per_repeat = tuple(round(float(p99(r)) / then_p99, 3) for r in repeats if len(r))
    return _decide(interval, per_repeat, limit, repeats=len(per_repeat))


def _decide(ratio: Interval, per_repeat: tuple[float, ...], limit: float,
            repeats: int) -> Comparison:
    shown = f"p99 {ratio.value:.2f}x (95% interval {ratio.low:.2f}-{ratio.high:.2f}x)"
    if ratio.high <= limit:
        return Comparison("pass", ratio, per_repeat, limit,
                          f"{shown}, within {limit:g}x")
    if ratio.low > limit and per_repeat and min(per_repeat) > limit:
        return Comparison("regressed", ratio, per_repeat, limit,
                          f"{shown}, above {limit:g}x in every one of {repeats} repeat(s)")
    return Comparison("inconclusive", ratio, per_repeat, limit,
                      f"{shown} straddles {limit:g}x: {needed(ratio, limit, repeats)}")


def needed(ratio: Interval, limit: float, repeats: int) -> str:
    """How many repeats would make the interval clear the limit, at this spread."""
    half = (ratio.high - ratio.low) / 2
    distance = abs(ratio.value - limit)
    if distance < 0.01 * limit or half <= 0:
        return "the ratio sits on the limit; no number of repeats will decide it"
    wanted = math.ceil(max(repeats, 1) * (half / distance) ** 2)
    if wanted > MAX_REPEATS_SUGGESTED:
        return (f"about {wanted} repeats would decide it; run on a quieter machine or "
                "widen the limit")
    return f"--repeat {max(wanted, repeats + 1)} would decide it"
