"""Pure statistics over HdrHistograms.

Latencies are recorded in microseconds (3 significant digits, up to 1 hour), summarised in
milliseconds. Histograms travel between processes in HdrHistogram's own compressed encoding
and are merged by adding counts, never by averaging percentiles.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

from probe.measurement import LagSummary, LatencySummary
from probe.messages import SleepRound

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def encode(hist: HdrHistogram) -> str:
    encoded: bytes = hist.encode()
    return encoded.decode("ascii")


def decode(encoded: str) -> HdrHistogram:
    """An encoded histogram back; an empty string is an empty histogram."""
    return HdrHistogram.decode(encoded.encode("ascii")) if encoded else new_histogram()


def summarize_encoded(encoded: str) -> LatencySummary:
    return latency_summary(decode(encoded))


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """Exact merge of encoded histograms (counts are added bucket by bucket)."""
    total = new_histogram()
    for item in encoded:
        if item:
            total.decode_and_add(item.encode("ascii"))
    return total


def _ms(us: float) -> float:
    return round(us / 1000.0, 4)


def latency_summary(hist: HdrHistogram) -> LatencySummary:
    if hist.get_total_count() == 0:
        return LatencySummary(avg=0.0, p50=0.0, p90=0.0, p99=0.0, p999=0.0, max=0.0, count=0)
    at = hist.get_percentile_to_value_dict([50, 90, 99, 99.9])  # one walk of the buckets
    return LatencySummary(
        avg=_ms(hist.get_mean_value()), p50=_ms(at[50]), p90=_ms(at[90]), p99=_ms(at[99]),
        p999=_ms(at[99.9]), max=_ms(hist.get_max_value()),
        count=hist.get_total_count(),
    )


def lag_summary(hist: HdrHistogram) -> LagSummary:
    if hist.get_total_count() == 0:
        return LagSummary(p50=0.0, p99=0.0, p999=0.0, max=0.0, samples=0)
    at = hist.get_percentile_to_value_dict([50, 99, 99.9])
    return LagSummary(
        p50=_ms(at[50]), p99=_ms(at[99]), p999=_ms(at[99.9]), max=_ms(hist.get_max_value()),
        samples=hist.get_total_count(),
    )


def values_us(hist: HdrHistogram) -> tuple[list[int], list[int]]:
    """(value, count) pairs of every recorded bucket, for resampling."""
    values, counts = [], []
    for item in hist.get_recorded_iterator():
        values.append(item.value_iterated_to)
        counts.append(item.count_added_in_this_iter_step)
    return values, counts


def burn_ratio(r: SleepRound) -> float:
    """CPU of the hub thread over the time it could have run (wall minus waiting for a CPU)."""
    could_run = r.wall_s - r.runq_s
    return r.cpu_s / could_run if could_run > 0 else 0.0


def staircase_step(hist: HdrHistogram, min_waits: int = 5) -> float | None:
    """The step, in ms, when the waits grow like a staircase (the k-th waiter waits about k
    steps: each got the connection only after a whole turn of the one before), else None.

    Robust to a few odd steps (a preempted turn doubles one): the steps are judged by their
    median and median deviation, the growth by a straight-line fit over the waiters' ranks."""
    if not min_waits <= hist.get_total_count() <= 1000:  # a pile of waits is not a staircase
        return None
    values, counts = values_us(hist)
    waits = sorted(v / 1000 for v, c in zip(values, counts, strict=True) for _ in range(c))
    gaps = [b - a for a, b in itertools.pairwise(waits)]
    step = statistics.median(gaps)
    if step <= 0.5:  # sub-ms gaps: a pile of short waits, not steps
        return None
    even = statistics.median(abs(g - step) for g in gaps) <= 0.5 * step  # random waits: ~0.7
    ranks = range(1, len(waits) + 1)
    slope, intercept = statistics.linear_regression(ranks, waits)
    linear = statistics.correlation(ranks, waits) >= 0.98 and -slope <= intercept <= 1.5 * slope
    return round(step, 2) if even and linear else None
