"""Bench worker: one fresh process per variant, measuring from inside with gevent patched.

Started by probe.worker_process as `python -m probe.worker --pipe FD`. The job (messages.WorkerJob)
arrives as JSON on stdin, so nothing of the DSN shows in `ps`; the reply (messages.WorkerReply)
leaves as JSON on the pipe, so stdout and stderr stay free for humans and tracebacks.

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
    raw = json.load(sys.stdin)

    from probe.lifecycle import die_with_parent

    die_with_parent()
    from probe import variants
    from probe.drivers import DriverUnavailable, activate
    from probe.messages import WorkerJob, WorkerReply
    from probe.model import from_dict

    job = from_dict(WorkerJob, raw)
    try:
        driver = activate(variants.BY_NAME[job.variant], job.partial_block_ms)
    except DriverUnavailable as ex:
        Reply(args.pipe).send(WorkerReply(unavailable=str(ex)))
        return 0
    reply = Reply(args.pipe)  # after the driver: Reply imports gevent, whose order matters
    if job.check_only:
        reply.send(WorkerReply(runtime=driver.runtime()))
        return 0
    from probe.measure import first_line

    try:
        report = measure(driver, job, reply)
    except Exception as ex:  # the database went away, the driver failed: say so, in one line
        reply.send(WorkerReply(failed=first_line(ex)))
        return 0
    reply.send(WorkerReply(report=report))
    return 0


class Reply:
    """The one reply on the pipe: the report, or a deadlock's, from whichever thread comes
    first (a deadlocked process never finishes its report: its watchdog sends instead)."""

    def __init__(self, fd: int) -> None:
        from gevent.monkey import get_original

        self.fd = fd
        self._lock = get_original("threading", "Lock")()
        self.sent = False

    def send(self, payload: Any) -> None:
        """`payload`: a messages.WorkerReply."""
        from probe.model import to_dict

        with self._lock:
            if self.sent:
                return
            self.sent = True
            with os.fdopen(self.fd, "w") as pipe:
                json.dump(to_dict(payload), pipe)


def measure(driver: Any, job: Any, reply: Reply) -> Any:
    """`job`: a messages.WorkerJob; returns a messages.WorkerReport."""
    import dataclasses

    from probe import connects, contention
    from probe.drivers import computation, lock_binding
    from probe.measure import ProbeJob, close_all, open_connections, probe, run_load
    from probe.messages import WorkerReply, WorkerReport
    from probe.monitor import LoopMonitor
    from probe.workloads import WORKLOADS

    contention.instrument_psycopg()  # before any connection exists
    monitor = LoopMonitor(threshold_s=job.block_threshold_ms / 1000,
                          deadlock_after_s=job.deadlock_after_s).start()
    locks = tuple(lock_binding())  # now, in the hub: a deadlock's report comes from a thread
    monitor.on_deadlock = lambda found: reply.send(WorkerReply(
        deadlock=dataclasses.replace(found, locks=locks)))
    connects.instrument(monitor.tracer)
    workload = WORKLOADS[job.workload]
    conns = open_connections(driver, job.dsn, job.concurrency)
    shared = open_connections(driver, job.dsn, 1) if job.connections == "shared" else []
    try:
        workload.setup(driver, conns[0])
        probed = probe(driver, ProbeJob(dsn=job.dsn, concurrency=job.concurrency,
                                        sleep_s=job.sleep_ms / 1000, rounds=job.rounds),
                       monitor, conns)
        work = computation(job.compute_ms) if driver.variant.compute else None
        targets = ([job.dsn] * job.concurrency if workload.connects
                   else shared * job.concurrency or conns)
        load, watched = run_load(driver, targets, job.queries, job.duration, monitor, work,
                                 workload.name)
    finally:
        monitor.stop()
        close_all(conns + shared)
    return WorkerReport(variant=driver.variant.name, connections=job.connections,
                        probe=probed, monitor=watched, load=load)


if __name__ == "__main__":
    sys.exit(main())
