"""The data gevent-probe produces, as frozen dataclasses, and their one JSON mapping.

Every result that leaves a process (worker -> runner over a pipe, runner -> results.json)
goes through `to_dict` / `from_dict` here, so the schema lives in one place. A change
that breaks readers of results.json bumps SCHEMA.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

SCHEMA = "gevent-probe/1"

VERDICTS = ("healthy", "hub-blocking", "busy-wait", "inconclusive")

T = TypeVar("T")


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one HdrHistogram, in milliseconds."""

    avg: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    count: int


@dataclass(frozen=True)
class LagSummary:
    """How late the heartbeat greenlet woke up, in milliseconds."""

    p50: float
    p99: float
    max: float
    samples: int


@dataclass(frozen=True)
class Serialization:
    """C concurrent server-side sleeps: ratio ~1 when they overlap, ~C when serialised."""

    concurrency: int
    sleep_ms: float
    wall_ms: float
    ratio: float
    rounds: int


@dataclass(frozen=True)
class Cpu:
    ms_per_query: float
    burn_ratio: float  # CPU time / wall time while every connection waits on pg_sleep
    voluntary_ctx_per_query: float
    involuntary_ctx_per_query: float


@dataclass(frozen=True)
class HubBlocks:
    """Stalls of the gevent hub longer than `threshold_ms`, one event per stall.

    `max_ms` is the longest stall the heartbeat greenlet measured; `first_frames` is the hub
    thread's stack that the watchdog thread sampled during the first one.
    """

    count: int
    max_ms: float
    threshold_ms: float
    first_frames: tuple[str, ...] = ()


@dataclass(frozen=True)
class Runtime:
    """What a measured process really ran, as it reported it from inside."""

    driver: str
    driver_version: str
    impl: str
    wait_function: str
    libpq_version: str
    patched_modules: tuple[str, ...]
    gevent_version: str
    greenlet_version: str
    psycopg_wait_func_env: str | None = None
    psycogreen: bool = False


@dataclass(frozen=True)
class SleepRound:
    wall_s: float
    cpu_s: float


@dataclass(frozen=True)
class WorkerReport:
    """Raw measurements sent by one bench worker; the runner turns them into a result."""

    variant: str
    runtime: Runtime
    latency_hdr: str  # encoded HdrHistogram of SELECT 1 latency, microseconds
    lag_hdr: str  # encoded HdrHistogram of heartbeat lateness, microseconds
    queries: int
    errors: int
    load_wall_s: float
    load_cpu_s: float
    voluntary_ctx: int
    involuntary_ctx: int
    concurrency: int
    sleep_s: float
    sleep_rounds: tuple[SleepRound, ...]
    block_events: int
    block_threshold_ms: float
    block_first_frames: tuple[str, ...]
    first_error: str | None = None


@dataclass(frozen=True)
class Unavailable:
    """A variant that could not run here, and how to make it available."""

    name: str
    reason: str
    hint: str


@dataclass(frozen=True)
class RouteStats:
    """One HTTP route under load, from our HdrHistogram, beside locust's rounded view."""

    name: str
    latency_ms: LatencySummary
    requests: int
    failures: int
    rps: float
    locust_p50_ms: float | None = None
    locust_p99_ms: float | None = None


@dataclass(frozen=True)
class WorkerSummary:
    pid: int
    requests: int
    cpu_s: float
    wait_function: str


@dataclass(frozen=True)
class SystemView:
    """What users felt (HTTP) and what the gunicorn workers saw, in system mode."""

    scenario: str
    users: int
    duration_s: float
    rps: float
    error_rate: float
    routes: tuple[RouteStats, ...]
    db_latency_ms: LatencySummary  # the workers' own timing of their SELECT 1 calls
    workers: tuple[WorkerSummary, ...]
    worker_cpu_share: float  # CPU seconds of all workers / load wall time
    loadgen_processes: int
    loadgen_core_share: float  # busiest locust process: CPU seconds / load wall time
    loadgen_saturated: bool


@dataclass(frozen=True)
class VariantResult:
    name: str
    driver: str
    impl: str
    wait_function: str
    verdict: str
    latency_ms: LatencySummary
    throughput_qps: float
    serialization: Serialization
    cpu: Cpu
    loop_lag_ms: LagSummary
    hub_blocks: HubBlocks
    evidence: tuple[str, ...]
    fix: str | None
    runtime: Runtime
    errors: int
    latency_hdr: str
    system: SystemView | None = None  # system mode (`gevent-probe run`) only


@dataclass(frozen=True)
class RunResult:
    run_id: str
    mode: str
    started: str
    duration_s: float
    environment: dict[str, Any]
    config: dict[str, Any]
    variants: tuple[VariantResult, ...]
    skipped: tuple[Unavailable, ...] = ()
    schema: str = field(default=SCHEMA)


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a model object (tuples become lists)."""
    return dataclasses.asdict(obj)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a model object from `to_dict` output, nested dataclasses included."""
    if cls is RunResult and data.get("schema", SCHEMA) != SCHEMA:
        raise ValueError(f"unsupported results schema {data.get('schema')!r}, expected {SCHEMA!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(inner[0], value)
    if origin is tuple:
        (item, *_rest) = typing.get_args(hint)
        return tuple(_convert(item, v) for v in value)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    return value
