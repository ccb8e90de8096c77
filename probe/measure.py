"""The in-process measurement core: the same code measures in `bench` and in `run`.

It runs where the driver runs, in a process that gevent has patched: the bench worker calls
it directly, and every gunicorn worker calls it behind the probe's own route. So a field means
the same thing in both modes, and nothing outside the process (the app's pool size, how
gunicorn spreads requests over workers) can move it.

The probe opens C connections of its own and makes them all sleep server-side at once:
- serialisation: cooperative waits overlap (wall ~ 1 x sleep), a blocked hub runs them one
  after another (wall ~ C x sleep);
- CPU burn: the hub thread's own CPU time (every greenlet runs there) while they all wait;
- blocked time: per query, how long it held the hub while its thread was off the CPU
  (the slice tracer in precise mode), which catches a driver that blocks for a fraction of a
  millisecond per query.

The load (bench only; in `run`, locust drives the app) runs SELECT 1 in C greenlets, each on
its own connection or all on one shared connection, and times every call.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
from gevent.pool import Pool
from hdrh.histogram import HdrHistogram

from probe import contention, stats, thresholds
from probe.messages import LoadReport, MonitorReport, ProbeReport, SleepRound
from probe.monitor import LoopMonitor
from probe.sched import SchedStat
from probe.slices import BlockedClock

if TYPE_CHECKING:
    from probe.drivers import Driver

WARM_UP_QUERIES = 5
# A load bounded by a query count also stops after this long: a driver that blocks a few ms
# per query (the partial-block control) would otherwise make `bench` take minutes.
COUNTED_LOAD_CAP_S = 3.0


@dataclass(frozen=True)
class ProbeJob:
    dsn: str
    concurrency: int = 16
    sleep_s: float = 0.05
    rounds: int = 3  # at most; the probe stops after the first decisive round


def open_connections(driver: Driver, dsn: str, count: int) -> list[Any]:
    """`count` connections, opened concurrently and warmed up."""
    pool = Pool(count)
    conns: list[Any] = pool.map(lambda _: driver.connect(dsn), range(count))
    pool.map(lambda c: [driver.select1(c) for _ in range(WARM_UP_QUERIES)], conns)
    return conns


def close_all(conns: list[Any]) -> None:
    for conn in {id(c): c for c in conns}.values():  # a shared connection once
        try:
            conn.close()
        except Exception:  # a connection the server already dropped
            continue


def probe(driver: Driver, job: ProbeJob, monitor: LoopMonitor,
          conns: list[Any] | None = None) -> ProbeReport:
    """C connections sleep server-side at once, `rounds` times at most."""
    own = conns is None
    conns = conns if conns is not None else open_connections(driver, job.dsn, job.concurrency)
    blocked = stats.new_histogram()
    rounds: list[SleepRound] = []
    monitor.reset()
    try:
        with monitor.tracer.precise() as clock:
            pool = Pool(len(conns))
            for _ in range(thresholds.probe_rounds(job.rounds, len(conns))):
                rounds.append(_sleep_round(driver, pool, conns, job.sleep_s, clock, blocked))
                if decisive(rounds, job.concurrency, job.sleep_s, blocked):
                    break
    finally:
        if own:
            close_all(conns)
    monitor.settle()
    return ProbeReport(pid=os.getpid(), runtime=driver.runtime(), concurrency=len(conns),
                       sleep_s=job.sleep_s, rounds=tuple(rounds),
                       blocked_hdr=stats.encode(blocked),
                       culprits=monitor.tracer.culprits())


def _sleep_round(driver: Driver, pool: Pool, conns: list[Any], sleep_s: float,
                 clock: BlockedClock, blocked: HdrHistogram) -> SleepRound:
    """All connections sleep at once: wall time, and the hub thread's CPU meanwhile.

    The CPU is the hub thread's own: every greenlet, and so any busy wait, runs there, while the
    watchdog thread spends its own CPU sampling stacks. The time the thread waited for a CPU
    (other processes had it) is kept apart, so that a busy machine does not dilute the burn.
    """
    def one(conn: Any) -> None:
        with clock.call(blocked.record_value):
            driver.sleep(conn, sleep_s)

    sched = SchedStat()
    try:
        (cpu0, runq0), t0 = sched.read_ns(), time.perf_counter()
        pool.map(one, conns)
        (cpu1, runq1), wall = sched.read_ns(), time.perf_counter() - t0
    finally:
        sched.close()
    return SleepRound(wall_s=wall, cpu_s=(cpu1 - cpu0) / 1e9, runq_s=(runq1 - runq0) / 1e9)


def decisive(rounds: list[SleepRound], concurrency: int, sleep_s: float,
             blocked: HdrHistogram) -> bool:
    """True when every signal of the rounds so far is at least twice as far from its verdict
    threshold as it needs to be: another round could not change the verdict."""
    wall = statistics.median(r.wall_s for r in rounds)
    ratio = wall / sleep_s
    limit = thresholds.serialised_threshold(concurrency)
    burn = statistics.median(stats.burn_ratio(r) for r in rounds)
    blocked_ms = blocked.get_value_at_percentile(50) / 1000
    if blocked.get_total_count() < thresholds.MIN_PROBE_QUERIES:
        return False  # too few queries yet to judge the blocked time (small --concurrency)
    return (_clear(ratio - 1, limit - 1) and _clear(burn, thresholds.BURN_RATIO)
            and _clear(blocked_ms, thresholds.BLOCKED_MS))


def _clear(value: float, threshold: float) -> bool:
    return value <= threshold / 2 or value >= threshold * 2


def run_load(driver: Driver, conns: list[Any], queries: int | None, duration_s: float | None,
             monitor: LoopMonitor, work: Callable[[], None] | None = None,
             workload: str = "select1") -> tuple[LoadReport, MonitorReport]:
    """The workload's unit (probe.workloads; SELECT 1 by default) in one greenlet per entry of
    `conns` (the same connection repeated when they share one; the DSN for `connect`), every
    unit timed into one histogram; the monitor watches exactly the load, and calls it a
    deadlock when nothing completes for a while. `work`: what the app does per unit beside it
    (the compute control)."""
    from probe.workloads import WORKLOADS

    load = _Load(driver, work, WORKLOADS[workload].unit)
    contention.STATS.reset()
    monitor.reset()
    monitor.watch_progress(lambda: load.count + load.errors)
    usage0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    deadline = t0 + (duration_s or COUNTED_LOAD_CAP_S)
    try:
        Pool(len(conns)).map(lambda ic: load.one_greenlet(ic[1], ic[0], queries, deadline),
                             list(enumerate(conns)))
    finally:
        monitor.watch_progress(None)
    wall = time.perf_counter() - t0
    cpu_s, voluntary, involuntary = usage_since(usage0)
    monitor.settle()
    watched = monitor.report()  # before encoding: encoding holds the hub for tens of ms
    return LoadReport(
        db_hdr=stats.encode(load.hist), queries=load.count, errors=load.errors,
        wall_s=round(wall, 6), busy_s=round(load.hist.get_mean_value() * load.count / 1e6, 6),
        cpu_s=cpu_s, voluntary_ctx=voluntary, involuntary_ctx=involuntary,
        first_error=load.first_error,
        lock=contention.STATS.report() if driver.variant.driver == "psycopg" else None,
        workload=workload, errors_by_message=dict(load.messages),
        units_by_kind=dict(load.kinds),
    ), watched


MAX_MESSAGES = 10  # distinct error messages counted; the others add to the total only


def usage_since(before: resource.struct_rusage) -> tuple[float, int, int]:
    """(CPU s, voluntary, involuntary context switches) of this process since `before`."""
    now = resource.getrusage(resource.RUSAGE_SELF)
    return (round(now.ru_utime + now.ru_stime - before.ru_utime - before.ru_stime, 6),
            now.ru_nvcsw - before.ru_nvcsw, now.ru_nivcsw - before.ru_nivcsw)


class _Load:
    def __init__(self, driver: Driver, work: Callable[[], None] | None,
                 unit: Callable[[Any, Any, int], str]) -> None:
        self.driver = driver
        self.work = work
        self.unit = unit
        self.hist = stats.new_histogram()
        self.count = 0
        self.errors = 0
        self.first_error: str | None = None
        self.messages: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()

    def one_greenlet(self, conn: Any, index: int, queries: int | None, deadline: float) -> None:
        done = 0
        while (queries is None or done < queries) and time.perf_counter() < deadline:
            done += 1
            if self.work is not None:
                self.work()
            start = time.perf_counter_ns()
            try:
                kind = self.unit(self.driver, conn, index)
            except Exception as ex:
                self.failed(ex)
                if isinstance(conn, str) or not self.driver.is_broken(conn):
                    gevent.sleep(0)  # a failing driver must not starve the others
                    continue
                return
            self.hist.record_value(max(1, (time.perf_counter_ns() - start) // 1000))
            self.count += 1
            self.kinds[kind] += 1

    def failed(self, ex: BaseException) -> None:
        self.errors += 1
        message = first_line(ex)
        self.first_error = self.first_error or message
        if message in self.messages or len(self.messages) < MAX_MESSAGES:
            self.messages[message] += 1


def first_line(ex: BaseException) -> str:
    text = f"{type(ex).__name__}: {ex}".strip()
    return text.splitlines()[0] if text else type(ex).__name__
