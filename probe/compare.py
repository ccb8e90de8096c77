"""Noise-aware comparison of a latency percentile (p99, p50) between a run and a reference.

A p99 from one run is one draw from a noisy machine: the same code, minutes apart, gave bench
SELECT 1 p99s from 0.83 to 1.98 ms here. Resampling the latencies of one run (a bootstrap
over samples) sees none of that spread, and called unchanged code slower 1 time in 2 to 6.
So the unit is the repeat (one measurement of a variant, in its own process tree): each
repeat gives one p99, the comparison is on their logarithms, and the interval of the ratio
is Welch's t-interval of the difference of the mean log p99s. It widens with the spread
between runs on both sides, and with few repeats (t with few degrees of freedom), which is
what a gate must do on a noisy runner. Log p99 because run-to-run noise on latency is
multiplicative (a busier machine stretches every percentile by a factor).

A slowdown counts as `regressed` only when the whole interval lies above the allowed ratio
*and* every repeat on its own is above it; when the interval lies below the limit, it passes;
otherwise the comparison is `undecided`, and the message says which of the two rules left it
so. `resolution` is the ratio these repeats can tell from no change at all (the interval's
half-width): a limit finer than that can never be decided on this machine, and the gate says
so once, with the repeats it would take.

A baseline that keeps several runs (probe.baseline) carries what one run cannot: the noise
between runs, a quiet or busy quarter of an hour that moves every repeat of a run alike.
From MIN_RUNS runs on, the run is the unit: each run's mean log p99 is one draw, and the
interval of this run's ratio is the 95% prediction interval of a new draw from those,
t(k-1) * sd * sqrt(1 + 1/k) around their mean, which holds a run from a lucky or an unlucky
minute alike.

The median goes through the same comparison (stat "p50"). Against a saved baseline the gate
holds both: on a shared runner the p99 of one run is the machine's tail (5 runs of a
baseline resolved it to 1.2-2.2x either way in bench, 5x in run mode here), wide enough to hide
a request that became 10 ms slower, while the median moves with every request's own cost
and much less between runs (1.65x in run mode).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from probe import stats
from probe.baseline import MIN_RUNS

CONFIDENCE = 0.95
MIN_SAMPLES = 100  # latencies a repeat needs for its p99 to mean something
MAX_REPEATS_SUGGESTED = 50


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


Stat = Literal["p50", "p99"]
Outcome = Literal["pass", "regressed", "undecided"]


@dataclass(frozen=True)
class RatioComparison:
    """A percentile of a variant against a reference: the ratio, its interval, its meaning."""

    outcome: Outcome
    ratio: Interval
    per_repeat: tuple[float, ...]  # each repeat's value / the reference's geometric mean
    limit: float
    resolution: float | None  # ratios within 1/r..r cannot be told from no change
    repeats: tuple[int, int]  # (current, reference) repeats with enough samples
    reference_ms: tuple[float, ...]  # the reference's value per repeat: its own spread
    reason: str
    runs: int = 1  # runs of the reference the interval is from (1: its repeats are the unit)
    stat: Stat = "p99"


def repeat_values(encoded: Sequence[str], runs: Sequence[str] = (),
                  stat: Stat = "p99") -> list[tuple[float, str]]:
    """(ms, run) of `stat` in each repeat that recorded enough latencies."""
    out = []
    for item, run in itertools.zip_longest(encoded, runs[:len(encoded)], fillvalue=""):
        summary = stats.summarize_encoded(item)
        value = float(getattr(summary, stat))
        if summary.count >= MIN_SAMPLES and value > 0:
            out.append((value, run))
    return out


def compare_ratio(current: Sequence[str], reference: Sequence[str], limit: float,
                  reference_runs: Sequence[str] = (), stat: Stat = "p99") -> RatioComparison:
    """`current` and `reference`: one encoded histogram per repeat; `reference_runs`: the
    run each reference repeat came from, when the baseline keeps several."""
    now = [p for p, _ in repeat_values(current, stat=stat)]
    found = repeat_values(reference, reference_runs, stat)
    then = [p for p, _ in found]
    runs: dict[str, list[float]] = {}
    for value, run in found:
        runs.setdefault(run, []).append(math.log(value))
    if now and len(runs) >= MIN_RUNS:
        return _between_runs(now, then, [statistics.fmean(x) for x in runs.values()], limit,
                             stat)
    counts = (len(now), len(then))
    if not now or not then or len(now) + len(then) < 3:
        empty = Interval(0.0, 0.0, 0.0)
        return RatioComparison(
            "undecided", empty, (), limit, None, counts, tuple(then),
            f"too few repeats with {MIN_SAMPLES}+ latencies to see the noise between runs "
            f"({counts[0]} now, {counts[1]} in the reference; 3 in all are needed, e.g. "
            "--repeat 3 on both sides)", stat=stat)
    log_now, log_then = [math.log(x) for x in now], [math.log(x) for x in then]
    diff = statistics.fmean(log_now) - statistics.fmean(log_then)
    half = _half_width(log_now, log_then)
    interval = Interval(math.exp(diff), math.exp(diff - half), math.exp(diff + half))
    centre = math.exp(statistics.fmean(log_then))
    per_repeat = tuple(round(x / centre, 3) for x in now)
    return _decide(interval, per_repeat, limit, math.exp(half), counts, tuple(then), stat)


def _between_runs(now: list[float], then: list[float], run_means: list[float],
                  limit: float, stat: Stat) -> RatioComparison:
    """This run's mean log value against the runs of the baseline, as one more run: the 95%
    prediction interval of a new run's mean from k earlier ones."""
    from scipy import stats as scistats  # only for a gate that compares

    k = len(run_means)
    centre = statistics.fmean(run_means)
    diff = statistics.fmean(math.log(x) for x in now) - centre
    half = (float(scistats.t.ppf(0.5 + CONFIDENCE / 2, k - 1))
            * statistics.stdev(run_means) * math.sqrt(1 + 1 / k))
    interval = Interval(math.exp(diff), math.exp(diff - half), math.exp(diff + half))
    per_repeat = tuple(round(x / math.exp(centre), 3) for x in now)
    return _decide(interval, per_repeat, limit, math.exp(half), (len(now), len(then)),
                   tuple(then), stat, runs=k)


def _half_width(a: list[float], b: list[float]) -> float:
    """Welch's t half-width of mean(a) - mean(b). A side with one repeat borrows the other's
    variance (the same machine, the same noise): its own is unknown, not zero."""
    from scipy import stats as scistats  # only for a gate that compares

    va = statistics.variance(a) if len(a) > 1 else None
    vb = statistics.variance(b) if len(b) > 1 else None
    va = va if va is not None else vb
    vb = vb if vb is not None else va
    assert va is not None and vb is not None
    ea, eb = va / len(a), vb / len(b)
    se2 = ea + eb
    if se2 <= 0:
        return 0.0
    dof_parts = (ea ** 2 / (len(a) - 1) if len(a) > 1 else 0.0) + \
        (eb ** 2 / (len(b) - 1) if len(b) > 1 else 0.0)
    dof = se2 ** 2 / dof_parts if dof_parts > 0 else max(1, len(a) + len(b) - 2)
    return float(scistats.t.ppf(0.5 + CONFIDENCE / 2, dof)) * math.sqrt(se2)


def _decide(ratio: Interval, per_repeat: tuple[float, ...], limit: float, resolution: float,
            counts: tuple[int, int], reference: tuple[float, ...], stat: Stat = "p99",
            runs: int = 1) -> RatioComparison:
    over = (f"{counts[0]} repeat{'s' * (counts[0] != 1)} against {runs} runs of the baseline"
            if runs > 1 else
            f"{counts[0]} + {counts[1]} repeats")
    shown = (f"{stat} {ratio.value:.2f}x ({100 * CONFIDENCE:.0f}% interval {ratio.low:.2f}-"
             f"{ratio.high:.2f}x over {over})")

    def outcome(name: Outcome, reason: str) -> RatioComparison:
        return RatioComparison(name, ratio, per_repeat, limit, resolution, counts, reference,
                               f"{shown} {reason}", runs, stat)

    if ratio.high <= limit:
        return outcome("pass", f"within {limit:g}x")
    if ratio.low > limit:
        below = [i + 1 for i, r in enumerate(per_repeat) if r <= limit]
        if not below:
            return outcome("regressed", f"lies above {limit:g}x, and so does every one of "
                                        f"the {counts[0]} repeats")
        return outcome("undecided", f"lies above {limit:g}x, but repeat(s) "
                                    f"{', '.join(map(str, below))} did not "
                                    f"({', '.join(f'{per_repeat[i - 1]:.2f}x' for i in below)})")
    if runs > 1:
        return outcome("undecided", f"straddles {limit:g}x: the baseline's runs differ by "
                                    f"up to {resolution:.2f}x at {100 * CONFIDENCE:.0f}%, "
                                    "more than this change")
    return outcome("undecided", f"straddles {limit:g}x: {needed(ratio, limit, counts)}")


def needed(ratio: Interval, limit: float, counts: tuple[int, int]) -> str:
    """How many repeats a side would make the interval clear the limit, at this spread
    (an interval narrows as the square root of the repeats)."""
    half = math.log(ratio.high / ratio.value)
    distance = abs(math.log(ratio.value / limit))
    repeats = max(min(counts), 1)
    if distance < 0.01 or half <= 0:
        return "the ratio sits on the limit; no number of repeats will decide it"
    wanted = math.ceil(repeats * (half / distance) ** 2)
    if wanted > MAX_REPEATS_SUGGESTED:
        return (f"about {wanted} repeats a side would decide it; run on a quieter machine or "
                "widen the limit")
    return f"--repeat {max(wanted, repeats + 1)} on both sides would decide it"


def repeats_to_resolve(resolution: float, repeats: int, limit: float) -> int | None:
    """Repeats a side for the interval's half-width to shrink below the limit's distance."""
    if resolution <= 1 or limit <= 1:
        return None
    return math.ceil(repeats * (math.log(resolution) / math.log(limit)) ** 2)
