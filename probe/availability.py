"""Can each variant run here? Ask a real process, importing in the variant's order.

Importing is the only honest check: a psycopg-c that does not match psycopg's version is
installed, yet fails at import (psycopg 3.3.9 + psycopg-c 3.3.8: AttributeError ... ready_c).
"""

from __future__ import annotations

from probe.measurement import Runtime
from probe.messages import WorkerJob
from probe.model import Unavailable
from probe.variants import Variant, for_mode
from probe.worker_process import WorkerFailed, run_worker

CHECK_TIMEOUT_S = 60.0


def check(variant: Variant) -> Runtime | Unavailable:
    try:
        reply = run_worker("probe.worker", WorkerJob(variant.name, check_only=True),
                           variant.environment(), CHECK_TIMEOUT_S)
    except WorkerFailed as ex:
        return Unavailable(variant.name, str(ex), variant.install_hint)
    if reply.runtime is None:
        return Unavailable(variant.name, reply.unavailable or reply.failed or "no answer",
                           variant.install_hint)
    return reply.runtime


def check_all(mode: str) -> list[tuple[Variant, Runtime | Unavailable]]:
    return [(variant, check(variant)) for variant in for_mode(mode)]
