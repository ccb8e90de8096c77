"""The bench transport: each variant measured in a fresh worker process, no HTTP.

Greenlets query PostgreSQL directly: seconds instead of minutes. The worker (probe.worker)
runs probe.measure and sends its raw report back on a pipe; probe.summary turns it into the
same Measurement that `run` produces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from probe import summary
from probe.model import Deadlock, Measurement, Unavailable, WorkerReport, from_dict, to_dict
from probe.postgres import lock_waits
from probe.runner import WorkerFailed, run_worker
from probe.settings import Settings
from probe.variants import Variant

START_BUDGET_S = 60.0  # interpreter, gevent and driver imports, connections
WORST_QUERY_S = 0.01  # budget per SELECT 1 when a count, not a duration, bounds the load


class BenchTransport:
    def __init__(self, settings: Settings, dsn: str, python: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.dsn = dsn
        self.python = python  # another environment's interpreter (the version matrix)
        self.env = env or {}

    def job(self, variant: Variant) -> dict[str, Any]:
        s = self.settings
        return {"variant": variant.name, "dsn": self.dsn, "concurrency": s.concurrency,
                "connections": s.connections, "queries": None if s.load_s else s.queries,
                "duration": s.load_s, "sleep_ms": s.sleep_ms, "rounds": s.rounds,
                "block_threshold_ms": s.block_threshold_ms,
                "partial_block_ms": s.partial_block_ms, "compute_ms": s.compute_ms,
                "workload": s.workload, "deadlock_after_s": s.deadlock_after}

    def _stuck(self, reply: dict[str, Any]) -> dict[str, Any]:
        """A worker that replied and stays: deadlocked. Ask the server what its backends wait
        for, while they still wait (the worker is killed next)."""
        if "deadlock" in reply:
            reply["deadlock"]["backends"] = [to_dict(b) for b in lock_waits(self.dsn)]
        return reply

    def timeout_s(self) -> float:
        """Long enough for the slowest honest run (every sleep serialised), no longer."""
        s = self.settings
        load = s.load_s if s.load_s else s.queries * s.concurrency * WORST_QUERY_S
        return START_BUDGET_S + s.probe_budget_s + load

    def measure(self, variant: Variant,
                phase: Callable[[str], None] | None = None) -> Measurement | Unavailable:
        try:
            reply = run_worker("probe.worker", self.job(variant),
                               {**self.env, **variant.environment()}, self.timeout_s(),
                               self.python, stuck=self._stuck)
        except WorkerFailed as ex:
            return summary.failed(variant, f"The measured process failed: {ex}")
        if "deadlock" in reply:
            return summary.deadlocked(variant, from_dict(Deadlock, reply["deadlock"]))
        if "unavailable" in reply:
            return Unavailable(variant.name, reply["unavailable"], variant.install_hint)
        if "failed" in reply:
            return summary.failed(variant, f"The measured process stopped: {reply['failed']}")
        return summary.from_bench(from_dict(WorkerReport, reply["report"]))
