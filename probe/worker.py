"""Bench worker: one fresh process per variant, measuring from inside with gevent patched.

Started by probe.runner as `python -m probe.worker --pipe FD`. The job (variant, DSN, sizes)
arrives as JSON on stdin, so nothing of the DSN shows in `ps`; the report leaves as JSON on
the pipe, so stdout and stderr stay free for humans and tracebacks.

Keep the top-level imports to the standard library: the driver must be imported in the
variant's order relative to `monkey.patch_all()`, which happens in `main`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
        driver = activate(variant, float(job.get("partial_block_ms", 2.0)))
    except DriverUnavailable as ex:
        _send(args.pipe, {"unavailable": str(ex)})
        return 0
    from probe.model import to_dict

    if job.get("check_only"):
        _send(args.pipe, {"runtime": to_dict(driver.runtime())})
        return 0
    from probe.measure import first_line

    try:
        report = measure(driver, job)
    except Exception as ex:  # the database went away, the driver failed: say so, in one line
        _send(args.pipe, {"failed": first_line(ex)})
        return 0
    _send(args.pipe, {"report": to_dict(report)})
    return 0


def _send(fd: int, payload: dict[str, Any]) -> None:
    with os.fdopen(fd, "w") as pipe:
        json.dump(payload, pipe)


def measure(driver: Any, job: dict[str, Any]) -> Any:
    from probe import connects, contention
    from probe.drivers import computation
    from probe.measure import ProbeJob, close_all, open_connections, probe, run_load
    from probe.model import WorkerReport
    from probe.monitor import LoopMonitor

    contention.instrument_psycopg()  # before any connection exists
    concurrency = int(job["concurrency"])
    monitor = LoopMonitor(threshold_s=float(job["block_threshold_ms"]) / 1000).start()
    connects.instrument(monitor.tracer)
    conns = open_connections(driver, job["dsn"], concurrency)
    shared = open_connections(driver, job["dsn"], 1) if job["connections"] == "shared" else []
    try:
        probed = probe(driver, ProbeJob(dsn=job["dsn"], concurrency=concurrency,
                                        sleep_s=float(job["sleep_ms"]) / 1000,
                                        rounds=int(job["rounds"])), monitor, conns)
        work = computation(float(job["compute_ms"])) if driver.variant.compute else None
        load, watched = run_load(driver, shared * concurrency or conns, job.get("queries"),
                                 job.get("duration"), monitor, work)
    finally:
        monitor.stop()
        close_all(conns + shared)
    return WorkerReport(variant=driver.variant.name, connections=job["connections"],
                        probe=probed, monitor=watched, load=load)


if __name__ == "__main__":
    sys.exit(main())
