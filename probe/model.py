"""The data gevent-probe produces, as frozen dataclasses, and their one JSON mapping.

Two kinds of records live here:
- raw reports, which measured processes send over a pipe or leave in a file (ProbeReport,
  MonitorReport, LoadReport, WorkerReport, AgentReport); they never reach results.json;
- results (Measurement, VariantResult, RunResult, MatrixResult), which results.json holds.

Everything goes through `to_dict` / `from_dict`, so the schema lives in one place. A change
that breaks readers of results.json bumps SCHEMA.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

SCHEMA = "gevent-probe/2"

VERDICTS = ("healthy", "hub-blocking", "busy-wait", "contention", "regressed", "inconclusive")
PATHOLOGIES = ("hub-blocking", "busy-wait", "contention", "regressed")

T = TypeVar("T")


# --- summaries ------------------------------------------------------------------------------

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
    """How late the 1 ms heartbeat woke, in ms, corrected for coordinated omission."""

    p50: float
    p99: float
    p999: float
    max: float
    samples: int


@dataclass(frozen=True)
class Serialization:
    """C concurrent server-side sleeps on C connections: ratio ~1 if they overlap, ~C if not."""

    concurrency: int
    sleep_ms: float
    wall_ms: float
    ratio: float
    rounds: int
    threshold: float  # ratio from which the sleeps count as serialised


@dataclass(frozen=True)
class Cpu:
    burn_ratio: float  # hub-thread CPU / wall while every probe connection waits on pg_sleep
    ms_per_query: float  # process CPU per query of the load
    voluntary_ctx_per_query: float
    involuntary_ctx_per_query: float


@dataclass(frozen=True)
class StallEvent:
    """One stall of the hub: when it began (Unix time, s), how long it lasted (ms), and what
    the hub thread did meanwhile: "blocked" in the kernel, "busy" on the CPU, or "preempted"
    by other processes (the machine's noise, not the app's doing)."""

    t: float
    ms: float
    kind: str = "blocked"


@dataclass(frozen=True)
class Culprit:
    """Where the hub thread was when the watchdog sampled it during stalls."""

    frame: str  # the innermost line, 'File "...", line N, in f `source`'
    count: int  # stalls sampled there
    stack: tuple[str, ...]  # the first sampled stack, innermost last


@dataclass(frozen=True)
class Stalls:
    """Heartbeat wakes later than `threshold_ms`: exact counts, from the lag record.

    `count` and `share` leave out stalls where the hub thread was preempted by other
    processes: those measure the machine, not the app; `preempted` counts them apart."""

    threshold_ms: float
    count: int  # blocked + busy stalls
    total_ms: float  # their summed lateness
    share: float  # total_ms / the wall time watched
    max_ms: float
    blocked: int = 0
    busy: int = 0
    preempted: int = 0
    preempted_ms: float = 0.0
    watched_ms: float = 0.0  # the time the share is of (every worker's, in run)
    culprits: tuple[Culprit, ...] = ()
    events: tuple[StallEvent, ...] = ()


@dataclass(frozen=True)
class Second:
    """One second of the load phase (`run`): what users felt beside what the hub did."""

    t: int  # seconds since the load started
    requests: int
    failures: int
    p99_ms: float
    lag_max_ms: float
    stalled_ms: float


@dataclass(frozen=True)
class DbLoad:
    """The driver's own calls under load, timed where they ran."""

    latency_ms: LatencySummary
    queries: int
    errors: int
    qps: float
    first_error: str | None = None


@dataclass(frozen=True)
class Contention:
    """Greenlets waiting for a connection another greenlet holds (psycopg's connection lock)."""

    connections: str  # "shared" or "per-greenlet"
    acquisitions: int
    contended: int  # acquisitions that had to wait
    wait_ms: LatencySummary  # of the waits that happened
    wait_total_ms: float
    wait_share: float  # wait_total / (wait_total + time spent in the calls)
    first_frame: str | None = None  # where a greenlet first waited for a busy connection
    step_ms: float | None = None  # the waits form a staircase of this step (see stats)


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
class HttpView:
    """What users felt in `run`: end-to-end latency per route under locust load."""

    scenario: str
    users: int
    duration_s: float
    rps: float
    error_rate: float
    routes: tuple[RouteStats, ...]
    loadgen_processes: int
    loadgen_core_share: float  # busiest locust process: CPU seconds / load wall time
    loadgen_saturated: bool
    timeline: tuple[Second, ...] = ()
    started: float = 0.0  # Unix time locust started the test: stall events are placed against it


@dataclass(frozen=True)
class WorkerSummary:
    pid: int
    requests: int
    cpu_s: float
    wait_function: str
    status: str = "ok"  # "ok", "died" (no final report), "replacement" (started mid-run)


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
    patched_before_import: bool = True  # was select patched when the driver was imported?


@dataclass(frozen=True)
class Measurement:
    """Everything one measurement of one variant saw, in the same units in bench and run."""

    runtime: Runtime
    serialization: Serialization
    cpu: Cpu
    blocked_ms: LatencySummary  # per probe query: time it held the hub while off-CPU
    lag_ms: LagSummary
    stalls: Stalls
    db: DbLoad
    contention: Contention | None = None
    http: HttpView | None = None  # `run` only
    workers: tuple[WorkerSummary, ...] = ()  # `run` only
    problems: tuple[str, ...] = ()  # why these numbers cannot be trusted, found while measuring
    histograms: dict[str, str] = field(default_factory=dict)  # encoded HdrHistograms, µs
    wall_s: float = 0.0


@dataclass(frozen=True)
class Repeat:
    """One of K interleaved repeats of a variant, kept for the statistics of `gate`."""

    verdict: str
    serialization_ratio: float
    histograms: dict[str, str]  # "db", and "http:<route>" in run
    started: str = ""


@dataclass(frozen=True)
class VariantResult:
    name: str
    control: bool
    expected: str | None  # the verdict a control must get
    verdict: str
    evidence: tuple[str, ...]
    fix: str | None
    measured: Measurement
    repeats: tuple[Repeat, ...] = ()

    @property
    def runtime(self) -> Runtime:
        return self.measured.runtime


@dataclass(frozen=True)
class Unavailable:
    """A variant that could not run here, and how to make it available."""

    name: str
    reason: str
    hint: str


@dataclass(frozen=True)
class CheckResult:
    """One gate check on one variant (or route)."""

    variant: str
    check: str  # e.g. "max-p99", "verdict"
    passed: bool
    detail: str
    value: float | None = None
    limit: float | None = None


@dataclass(frozen=True)
class RunResult:
    run_id: str
    mode: str  # "bench" or "run"
    command: str  # how to reproduce it, password-free
    started: str
    duration_s: float
    complete: bool  # False while running, or when it was interrupted or aborted
    environment: dict[str, Any]
    settings: dict[str, Any]
    variants: tuple[VariantResult, ...]
    skipped: tuple[Unavailable, ...] = ()
    control_problems: tuple[str, ...] = ()  # controls not flagged as expected
    aborted: str | None = None  # why the run stopped before measuring every variant
    checks: tuple[CheckResult, ...] = ()  # gate only
    schema: str = SCHEMA

    @property
    def trusted(self) -> bool:
        return not self.control_problems and self.aborted is None


@dataclass(frozen=True)
class Transition:
    variant: str
    from_version: str
    to_version: str
    from_verdict: str
    to_verdict: str


@dataclass(frozen=True)
class VersionResult:
    version: str
    variants: tuple[VariantResult, ...] = ()
    unavailable: str | None = None  # why this version could not be installed here
    control_problems: tuple[str, ...] = ()  # controls not flagged as expected
    aborted: str | None = None


@dataclass(frozen=True)
class MatrixResult:
    run_id: str
    mode: str  # "matrix"
    command: str
    started: str
    duration_s: float
    complete: bool
    package: str
    environment: dict[str, Any]
    settings: dict[str, Any]
    versions: tuple[VersionResult, ...]
    transitions: tuple[Transition, ...] = ()
    schema: str = SCHEMA


# --- raw reports from measured processes -----------------------------------------------------

@dataclass(frozen=True)
class SleepRound:
    wall_s: float
    cpu_s: float  # CPU of the hub thread meanwhile
    runq_s: float = 0.0  # time the hub thread waited for a CPU meanwhile


@dataclass(frozen=True)
class ProbeReport:
    """The in-process probe: C own connections sleeping at once, timed where the driver runs."""

    pid: int
    runtime: Runtime
    concurrency: int
    sleep_s: float
    rounds: tuple[SleepRound, ...]
    blocked_hdr: str  # per query, µs it held the hub while off-CPU
    culprits: tuple[Culprit, ...] = ()  # where the watchdog found the hub during the probe


@dataclass(frozen=True)
class SecondLag:
    t: int  # Unix time, whole seconds
    max_ms: float
    stalled_ms: float


@dataclass(frozen=True)
class MonitorReport:
    interval_ms: float
    threshold_ms: float
    watched_s: float
    lag_hdr: str  # µs late, corrected for coordinated omission
    stalls: int  # blocked + busy
    stalled_ms: float
    max_ms: float
    kinds: dict[str, int] = field(default_factory=dict)  # stalls by kind
    preempted_ms: float = 0.0
    events: tuple[StallEvent, ...] = ()
    culprits: tuple[Culprit, ...] = ()
    seconds: tuple[SecondLag, ...] = ()


@dataclass(frozen=True)
class LockReport:
    acquisitions: int
    contended: int
    wait_hdr: str  # µs, contended acquisitions only
    wait_total_ms: float
    first_frame: str | None = None


@dataclass(frozen=True)
class LoadReport:
    db_hdr: str  # µs per SELECT 1 call, inside the process
    queries: int
    errors: int
    wall_s: float
    busy_s: float  # time spent inside driver calls, all routes (lock waits included)
    cpu_s: float
    voluntary_ctx: int
    involuntary_ctx: int
    first_error: str | None = None
    lock: LockReport | None = None


@dataclass(frozen=True)
class WorkerReport:
    """What one bench worker process sends back on its pipe."""

    variant: str
    connections: str
    probe: ProbeReport
    monitor: MonitorReport
    load: LoadReport


@dataclass(frozen=True)
class AgentReport:
    """What one gunicorn worker leaves in its stats folder when it exits (`run`)."""

    pid: int
    requests: dict[str, int]
    errors: dict[str, int]
    monitor: MonitorReport
    load: LoadReport  # its first_error is the app's first error


# --- the one JSON mapping --------------------------------------------------------------------

def to_dict(obj: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a model object (tuples become lists)."""
    return dataclasses.asdict(obj)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a model object from `to_dict` output, nested dataclasses included."""
    if cls in (RunResult, MatrixResult) and data.get("schema", SCHEMA) != SCHEMA:
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
    if origin is dict:
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    return value
