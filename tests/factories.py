"""Measurements built by hand, for the tests of pure logic (judge, summary, formatters)."""

from __future__ import annotations

import dataclasses

from probe import stats, thresholds
from probe.measurement import (
    Contention,
    Cpu,
    DbLoad,
    HeldSlice,
    LagSummary,
    LatencySummary,
    Measurement,
    Runtime,
    Serialization,
    Slices,
    Stalls,
)


def latency(p50: float, count: int = 4800, p99: float | None = None) -> LatencySummary:
    p99 = p99 if p99 is not None else p50 * 3
    return LatencySummary(avg=p50, p50=p50, p90=p50 * 2, p99=p99, p999=p99, max=p99 * 2,
                          count=count)


def runtime(**kw) -> Runtime:
    base = Runtime(driver="psycopg", driver_version="3.3.8", impl="binary",
                   wait_function="wait_poll", libpq_version="18.6",
                   patched_modules=("select", "socket"), gevent_version="26.9.0",
                   greenlet_version="3.5.6")
    return dataclasses.replace(base, **kw)


def serial(ratio: float, concurrency: int = 16) -> Serialization:
    return Serialization(concurrency=concurrency, sleep_ms=50, wall_ms=50 * ratio, ratio=ratio,
                         rounds=1, threshold=thresholds.serialised_threshold(concurrency))


def measurement(**kw) -> Measurement:
    base = Measurement(
        runtime=runtime(),
        serialization=serial(1.05),
        cpu=Cpu(burn_ratio=0.08, ms_per_query=0.05, voluntary_ctx_per_query=0.0,
                involuntary_ctx_per_query=0.1),
        blocked_ms=latency(0.0, count=16, p99=0.01),
        lag_ms=LagSummary(p50=0.05, p99=0.8, p999=1.0, max=1.5, samples=300),
        stalls=Stalls(threshold_ms=10, count=0, total_ms=0, share=0.0, max_ms=1.5),
        db=DbLoad(latency_ms=latency(0.4), queries=4800, errors=0, qps=15000.0),
        histograms={"db": stats.encode(stats.new_histogram())},
        wall_s=0.3,
    )
    return dataclasses.replace(base, **kw)


def slices(*, busy: float = 0.3, blocked: int = 0, blocked_ms: float = 0.0, computing: int = 0,
           computing_ms: float = 0.0, preempted: int = 0, preempted_ms: float = 0.0,
           watched_ms: float = 8000.0, longest: tuple[HeldSlice, ...] = (),
           **kw) -> Slices:
    base = Slices(threshold_ms=10.0, count=20_000, watched_ms=watched_ms,
                  busy_ms=busy * watched_ms, busy_share=busy,
                  length_ms=latency(0.3, count=20_000, p99=1.5), cpu_ms=busy * watched_ms,
                  blocked=blocked, blocked_ms=blocked_ms, computing=computing,
                  computing_ms=computing_ms, preempted=preempted, preempted_ms=preempted_ms,
                  longest=longest)
    return dataclasses.replace(base, **kw)


def held(ms: float, kind: str, frame: str = 'File "app.py", line 9, in view `work()`'):
    on_cpu = ms if kind == "computing" else 0.1
    return HeldSlice(t=0.0, ms=ms, kind=kind, on_cpu_ms=on_cpu, off_cpu_ms=ms - on_cpu,
                     frames=(frame,))


def contention(share: float, contended: int = 15) -> Contention:
    return Contention(connections="shared", acquisitions=800, contended=contended,
                      wait_ms=latency(5.0, count=contended, p99=95.0), wait_total_ms=800 * share,
                      wait_share=share, first_frame='File "app.py", line 3, in handler')
