"""Bench worker: one fresh process per variant, measuring from inside with gevent patched.

Started by probe.runner as `python -m probe.worker --pipe FD`. The job (variant, DSN, sizes)
arrives as JSON on stdin, so a DSN's password never shows in `ps`; the report leaves as JSON
on the pipe, so stdout and stderr stay free for humans and tracebacks.

Keep the top-level imports to the standard library: the driver must be imported in the
variant's order relative to `monkey.patch_all()`, which happens in `main`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probe.worker")
    parser.add_argument("--pipe", type=int, required=True, help="fd to write the JSON report to")
    args = parser.parse_args(argv)
    job = json.load(sys.stdin)

    from probe.lifecycle import die_with_parent

    die_with_parent()
    from probe import variants
    from probe.drivers import DriverUnavailable, activate

    variant = variants.BY_NAME[job["variant"]]
    try:
        driver = activate(variant)
    except DriverUnavailable as ex:
        _send(args.pipe, {"unavailable": str(ex)})
        return 0
    if job.get("check_only"):
        from probe.model import to_dict

        _send(args.pipe, {"runtime": to_dict(driver.runtime())})
        return 0
    report = measure(driver, job)
    from probe.model import to_dict

    _send(args.pipe, {"report": to_dict(report)})
    return 0


def _send(fd: int, payload: dict[str, Any]) -> None:
    with os.fdopen(fd, "w") as pipe:
        json.dump(payload, pipe)


def measure(driver: Any, job: dict[str, Any]) -> Any:
    import gevent
    from gevent.pool import Pool

    from probe import stats
    from probe.model import SleepRound, WorkerReport
    from probe.monitor import LoopMonitor

    concurrency = int(job["concurrency"])
    monitor = LoopMonitor(threshold_s=float(job.get("block_threshold_s", 0.01)))
    monitor.start()
    pool = Pool(concurrency)
    conns = pool.map(lambda _: driver.connect(job["dsn"]), range(concurrency))
    pool.map(lambda c: [driver.select1(c) for _ in range(5)], conns)  # warm-up
    gevent.sleep(0.01)
    monitor.reset()

    load = _Load(driver, conns, stats.new_histogram())
    usage0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    load.run(pool, queries=job.get("queries"), duration=job.get("duration"))
    load_wall = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)

    sleep_s = float(job["sleep_s"])
    rounds = [_sleep_round(driver, pool, conns, sleep_s) for _ in range(int(job["rounds"]))]
    monitor.stop()
    for conn in conns:
        conn.close()
    return WorkerReport(
        variant=driver.variant.name,
        runtime=driver.runtime(),
        latency_hdr=stats.encode(load.hist),
        lag_hdr=stats.encode(monitor.lag),
        queries=load.count,
        errors=load.errors,
        load_wall_s=load_wall,
        load_cpu_s=_cpu(usage1) - _cpu(usage0),
        voluntary_ctx=usage1.ru_nvcsw - usage0.ru_nvcsw,
        involuntary_ctx=usage1.ru_nivcsw - usage0.ru_nivcsw,
        concurrency=concurrency,
        sleep_s=sleep_s,
        sleep_rounds=tuple(SleepRound(wall_s=w, cpu_s=c) for w, c in rounds),
        block_events=monitor.events,
        block_threshold_ms=monitor.threshold_s * 1000,
        block_first_frames=monitor.first_frames,
        first_error=load.first_error,
    )


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


class _Load:
    """SELECT 1 in every connection's greenlet, each query timed into one histogram."""

    def __init__(self, driver: Any, conns: list[Any], hist: Any) -> None:
        self.driver, self.conns, self.hist = driver, conns, hist
        self.count = 0
        self.errors = 0
        self.first_error: str | None = None

    def run(self, pool: Any, queries: int | None, duration: float | None) -> None:
        deadline = time.perf_counter() + duration if duration else None
        pool.map(lambda c: self._one_connection(c, queries, deadline), self.conns)

    def _one_connection(self, conn: Any, queries: int | None, deadline: float | None) -> None:
        done = 0
        while (queries is None or done < queries) and (
            deadline is None or time.perf_counter() < deadline
        ):
            done += 1
            start = time.perf_counter_ns()
            try:
                self.driver.select1(conn)
            except Exception as ex:
                self.errors += 1
                self.first_error = self.first_error or f"{type(ex).__name__}: {ex}".strip()
                if self.driver.is_broken(conn):
                    return
                continue
            self.hist.record_value((time.perf_counter_ns() - start) // 1000)
            self.count += 1


def _sleep_round(driver: Any, pool: Any, conns: list[Any], sleep_s: float) -> tuple[float, float]:
    """All connections sleep server-side at once: wall time and CPU burned meanwhile.

    CPU is the hub thread's own (thread_time): every greenlet, and so any busy wait, runs
    there, while the watchdog thread spends its own CPU sampling stacks.
    """
    cpu0, t0 = time.thread_time(), time.perf_counter()
    pool.map(lambda c: driver.sleep(c, sleep_s), conns)
    return time.perf_counter() - t0, time.thread_time() - cpu0


if __name__ == "__main__":
    sys.exit(main())
