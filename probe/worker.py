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

    reply = Reply(args.pipe)
    try:
        report = measure(driver, job, reply)
    except Exception as ex:  # the database went away, the driver failed: say so, in one line
        reply.send({"failed": first_line(ex)})
        return 0
    reply.send({"report": to_dict(report)})
    return 0


def _send(fd: int, payload: dict[str, Any]) -> None:
    Reply(fd).send(payload)


class Reply:
    """The one reply on the pipe: the report, or a deadlock's, from whichever thread comes
    first (a deadlocked process never finishes its report: its watchdog sends instead)."""

    def __init__(self, fd: int) -> None:
        from gevent.monkey import get_original

        self.fd = fd
        self._lock = get_original("threading", "Lock")()
        self.sent = False

    def send(self, payload: dict[str, Any]) -> None:
        with self._lock:
            if self.sent:
                return
            self.sent = True
            with os.fdopen(self.fd, "w") as pipe:
                json.dump(payload, pipe)


def measure(driver: Any, job: dict[str, Any], reply: Reply) -> Any:
    import dataclasses

    from probe import connects, contention
    from probe.drivers import computation, lock_binding
    from probe.measure import ProbeJob, close_all, open_connections, probe, run_load
    from probe.model import WorkerReport, to_dict
    from probe.monitor import LoopMonitor
    from probe.workloads import WORKLOADS

    contention.instrument_psycopg()  # before any connection exists
    concurrency = int(job["concurrency"])
    monitor = LoopMonitor(threshold_s=float(job["block_threshold_ms"]) / 1000,
                          deadlock_after_s=float(job["deadlock_after_s"])).start()
    locks = tuple(lock_binding())  # now, in the hub: a deadlock's report comes from a thread
    monitor.on_deadlock = lambda found: reply.send({"deadlock": to_dict(dataclasses.replace(
        found, locks=locks))})
    connects.instrument(monitor.tracer)
    workload = WORKLOADS[job["workload"]]
    conns = open_connections(driver, job["dsn"], concurrency)
    shared = open_connections(driver, job["dsn"], 1) if job["connections"] == "shared" else []
    try:
        workload.setup(driver, conns[0])
        probed = probe(driver, ProbeJob(dsn=job["dsn"], concurrency=concurrency,
                                        sleep_s=float(job["sleep_ms"]) / 1000,
                                        rounds=int(job["rounds"])), monitor, conns)
        work = computation(float(job["compute_ms"])) if driver.variant.compute else None
        targets = ([job["dsn"]] * concurrency if workload.connects
                   else shared * concurrency or conns)
        load, watched = run_load(driver, targets, job.get("queries"), job.get("duration"),
                                 monitor, work, workload.name)
    finally:
        monitor.stop()
        close_all(conns + shared)
    return WorkerReport(variant=driver.variant.name, connections=job["connections"],
                        probe=probed, monitor=watched, load=load)


if __name__ == "__main__":
    sys.exit(main())
