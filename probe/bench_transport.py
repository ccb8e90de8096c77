"""The bench transport: each variant measured in a fresh worker process, no HTTP.

Greenlets query PostgreSQL directly: seconds instead of minutes. The worker (probe.worker)
runs probe.measure and sends its raw report back on a pipe; probe.aggregate turns it into the
same Measurement that `run` produces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from probe import aggregate
from probe.measurement import Measurement
from probe.messages import WorkerJob, WorkerReply
from probe.model import Unavailable
from probe.postgres import lock_waits
from probe.settings import Settings
from probe.variants import Variant
from probe.worker_process import WorkerFailed, run_worker

START_BUDGET_S = 60.0  # interpreter, gevent and driver imports, connections
WORST_QUERY_S = 0.01  # budget per SELECT 1 when a count, not a duration, bounds the load


class BenchTransport:
    def __init__(self, settings: Settings, dsn: str, python: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.dsn = dsn
        self.python = python  # another environment's interpreter (the version matrix)
        self.env = env or {}

    def job(self, variant: Variant) -> WorkerJob:
        s = self.settings
        return WorkerJob(variant=variant.name, dsn=self.dsn, concurrency=s.concurrency,
                         connections=s.connection_mode,
                         queries=None if s.load_s else s.queries, duration=s.load_s,
                         sleep_ms=s.sleep_ms, rounds=s.rounds,
                         block_threshold_ms=s.block_threshold_ms,
                         partial_block_ms=s.partial_block_ms, compute_ms=s.compute_ms,
                         workload=s.workload, deadlock_after_s=s.deadlock_after)

    def _stuck(self, reply: WorkerReply) -> WorkerReply:
        """A worker that replied and stays: deadlocked. Ask the server what its backends wait
        for, while they still wait (the worker is killed next)."""
        if reply.deadlock is None:
            return reply
        return dataclasses.replace(reply, deadlock=dataclasses.replace(
            reply.deadlock, backends=tuple(lock_waits(self.dsn))))

    def timeout_s(self) -> float:
        """Long enough for the slowest honest run (every sleep serialised), no longer."""
        s = self.settings
        load = s.load_s if s.load_s else s.queries * s.concurrency * WORST_QUERY_S
        return START_BUDGET_S + s.probe_budget_s + load

    def measure(self, variant: Variant,
                phase: Callable[[str], None] = lambda state: None) -> Measurement | Unavailable:
        s = self.settings
        phase(f"in a fresh worker process: the probe, then {s.load_s:g} s of load" if s.load_s
              else f"in a fresh worker process: the probe, then {s.queries} queries a greenlet")
        try:
            reply = run_worker("probe.worker", self.job(variant),
                               {**self.env, **variant.environment()}, self.timeout_s(),
                               self.python, stuck=self._stuck)
        except WorkerFailed as ex:
            return aggregate.failed(variant, f"The measured process failed: {ex}")
        if reply.deadlock is not None:
            return aggregate.deadlocked(variant, reply.deadlock)
        if reply.unavailable is not None:
            return Unavailable(variant.name, reply.unavailable, variant.install_hint)
        if reply.report is None:
            return aggregate.failed(variant, "The measured process stopped: "
                                           f"{reply.failed or 'it sent no report'}")
        return aggregate.from_bench(reply.report)
