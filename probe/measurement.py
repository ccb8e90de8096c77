"""What one measurement of a variant saw: the `measured` part of results.json.

Frozen dataclasses in the same units in bench and run, built by probe.aggregate from what
the measured processes reported (probe.messages), judged by probe.detect. They are
serialised with the results, through probe.model's one JSON mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

HeldKind = Literal["blocked", "computing", "preempted"]  # where a held slice's thread was
StallKind = Literal["blocked", "computing", "queued", "preempted"]  # why a beat was late
Connections = Literal["per-greenlet", "shared"]
# a gunicorn worker: measured throughout, gone without a final report, or started mid-run
WorkerState = Literal["ok", "died", "replacement"]

MAX_EVENTS = 2000  # stall and held-slice events kept for the timeline (counts stay exact)
SCHEDULE_KEPT = 0.95  # an open model reached this share of its rate...
SCHEDULE_LATE_MS = 10.0  # ...and sent 99% of its requests at most this late


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
    """How late the heartbeat woke, in ms, corrected for coordinated omission."""

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
    """One late wake of the heartbeat: when the stall began (Unix time, s), how long it lasted
    (ms), and why the heartbeat could not run: "blocked" or "computing" (one slice held the
    hub that long, asleep in a call or on the CPU), "queued" (no slice was that long: the
    ready queue of a busy worker), or "preempted" (other processes had the cores)."""

    t: float
    ms: float
    kind: StallKind = "queued"


@dataclass(frozen=True)
class Culprit:
    """Where the hub thread was when the watchdog sampled it during held slices."""

    frame: str  # the innermost line, 'File "...", line N, in f `source`'
    count: int  # held slices sampled there
    stack: tuple[str, ...]  # the first sampled stack, innermost last
    # False: none of these slices was sampled (a computing hub gives the watchdog the GIL
    # late), so the frame is only where they switched out: ranked after sampled ones
    sampled: bool = True


@dataclass(frozen=True)
class Stalls:
    """Heartbeat wakes later than `threshold_ms`: what the other greenlets waited, exact
    counts from the lag record. Never a verdict on its own (a saturated worker wakes late
    too): the slices say who held the hub.

    `count` and `share` leave out stalls where the hub thread was preempted by other
    processes: those measure the machine, not the app; `preempted` counts them apart."""

    threshold_ms: float
    count: int  # queued + blocked + computing stalls
    total_ms: float  # their summed lateness
    share: float  # total_ms / the wall time watched
    max_ms: float
    blocked: int = 0  # held by one slice asleep in a call
    computing: int = 0  # held by one slice on the CPU
    queued: int = 0  # no slice that long: the ready queue
    preempted: int = 0
    preempted_ms: float = 0.0
    watched_ms: float = 0.0  # the time the share is of (every worker's, in run)
    events: tuple[StallEvent, ...] = ()


@dataclass(frozen=True)
class HeldSlice:
    """One run of a greenlet (or of the hub itself) longer than the threshold: nothing else
    in the process ran meanwhile. `kind` is where the thread spent it: "blocked" asleep in a
    call, "computing" on the CPU, "preempted" waiting for a CPU (the machine's noise)."""

    t: float  # Unix time it began
    ms: float
    kind: HeldKind
    on_cpu_ms: float = 0.0
    off_cpu_ms: float = 0.0  # asleep in the kernel while holding the hub
    runq_ms: float = 0.0
    hub: bool = False  # the hub's own run (a callback), not a greenlet's
    in_connect: bool = False  # inside a driver's connect (a handshake: SCRAM, TLS)
    frames: tuple[str, ...] = ()  # the lines sampled while it ran, in order
    stack: tuple[str, ...] = ()  # the first sampled stack, innermost last
    yielded_at: str | None = None  # where it finally switched out


@dataclass(frozen=True)
class Connects:
    """Connections the measured process opened while watched (an app connecting per request)."""

    calls: int
    call_ms: float  # their elapsed time, waits for the server included
    held_ms: float  # the time their slices held the hub
    cpu_ms: float  # of which on the CPU (SCRAM, TLS)
    longest_ms: float  # the longest slice inside a connect


@dataclass(frozen=True)
class Slices:
    """Every greenlet run slice of the window: who held the hub, and how busy it was.

    `blocked`, `computing` and `preempted` count the slices longer than `threshold_ms`
    (held slices) by where the thread spent them; shares are of `watched_ms` (every worker's
    window, in run). `busy_share` is the greenlets' time over the window: near 1 is a
    saturated worker, whose requests queue although no slice is long."""

    threshold_ms: float
    count: int
    watched_ms: float
    busy_ms: float
    busy_share: float
    length_ms: LatencySummary  # slice lengths, greenlets' only
    cpu_ms: float = 0.0  # the hub thread's CPU over the window
    blocked: int = 0
    blocked_ms: float = 0.0
    computing: int = 0
    computing_ms: float = 0.0
    preempted: int = 0
    preempted_ms: float = 0.0
    longest: tuple[HeldSlice, ...] = ()
    culprits: tuple[Culprit, ...] = ()
    connects: Connects | None = None
    events: tuple[HeldSlice, ...] = ()  # every held slice (up to a cap), for the timeline
    capacity_rps: float | None = None  # run: the RPS at full use of the workers, estimated

    @property
    def blocked_share(self) -> float:
        return self.blocked_ms / self.watched_ms if self.watched_ms else 0.0

    @property
    def computing_share(self) -> float:
        return self.computing_ms / self.watched_ms if self.watched_ms else 0.0

    def blocked_bursts(self, gap_s: float, longest_s: float) -> int | None:
        """Bursts of blocked runs: a run more than `gap_s` after the last one ends starts a
        new one, and so does a run `longest_s` or more after its burst began (None without
        events: results written before they were kept)."""
        runs = sorted((e.t, e.t + e.ms / 1000) for e in self.events if e.kind == "blocked")
        if not runs:
            return None
        bursts, began, until = 1, runs[0][0], runs[0][1]
        for start, end in runs[1:]:
            if start > until + gap_s or start - began >= longest_s:
                bursts, began = bursts + 1, start
            until = max(until, end)
        return bursts


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
    workload: str = "select1"  # what each unit of the load was (probe.workloads)
    errors_by_message: dict[str, int] = field(default_factory=dict)  # first line -> count
    units_by_kind: dict[str, int] = field(default_factory=dict)  # mixed: completed per kind


@dataclass(frozen=True)
class Contention:
    """Greenlets waiting for a connection another greenlet holds (psycopg's connection lock)."""

    connections: Connections
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
    failed_with: dict[str, int] = field(default_factory=dict)  # status code (or error) -> n
    first_failure: str | None = None  # what the first failed request got back


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
    target_rps: float | None = None  # --rate: the open model's schedule; None: closed model
    app_error: str | None = None  # the first exception the app raised or logged, and where
    started_late_ms: LatencySummary | None = None  # --rate: how late requests left, vs due

    @property
    def sent(self) -> int | None:
        """Open model: the requests sent (answered or not)."""
        return self.started_late_ms.count if self.started_late_ms is not None else None

    @property
    def kept_schedule(self) -> bool:
        """Open model: locust sent the requests on time, at the rate asked for. Whether the
        app answered them is the app's latency, not the schedule."""
        if self.target_rps is None or self.started_late_ms is None or not self.duration_s:
            return True
        return (self.started_late_ms.count / self.duration_s >= SCHEDULE_KEPT * self.target_rps
                and self.started_late_ms.p99 <= SCHEDULE_LATE_MS)


@dataclass(frozen=True)
class WorkerSummary:
    pid: int
    requests: int
    cpu_s: float
    wait_function: str
    status: WorkerState = "ok"


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
    locks: tuple[str, ...] = ()  # how psycopg's and psycopg_pool's locks are bound


@dataclass(frozen=True)
class BackendWait:
    """A PostgreSQL backend involved in a lock wait, as the server saw it (pg_stat_activity,
    pg_locks), read from the tool's own connection while the measured process was stuck."""

    pid: int
    state: str  # "active", "idle in transaction", ...
    waiting_for: str | None  # "a tuple lock on gevent_probe_rowlock", or None (not waiting)
    blocked_by: tuple[int, ...]  # the backends holding what it waits for
    query: str  # its current or last statement, shortened


@dataclass(frozen=True)
class Deadlock:
    """A measured process that stopped making progress while work was pending, and why."""

    after_s: float  # how long nothing progressed before it was called a deadlock
    how: str  # "held": one run held the hub; "stalled": the hub ran, nothing completed
    hub_stack: tuple[str, ...]  # the hub thread's stack (the run that held it)
    greenlets: tuple[tuple[str, ...], ...]  # the other greenlets' stacks, where they wait
    locks: tuple[str, ...] = ()  # how the drivers' locks are bound (gevent's or the OS's)
    backends: tuple[BackendWait, ...] = ()  # filled in by the tool, from the server


@dataclass(frozen=True)
class AppDriver:
    """A driver the user's app imported itself (not the probe), as its worker reported it."""

    module: str  # "psycopg" or "psycopg2"
    version: str
    impl: str  # psycopg: binary, c or python; psycopg2: c
    wait_function: str
    when: str  # "with the app" (at its import) or "during requests" (imported lazily)


@dataclass(frozen=True)
class AppInfo:
    """The user's app of `run --app`, and the drivers it loaded."""

    target: str  # module:callable
    drivers: tuple[AppDriver, ...] = ()

    def uses(self, driver: str) -> bool:
        return any(d.module == driver for d in self.drivers)

    def described(self) -> str:
        if not self.drivers:
            return f"{self.target} imported no PostgreSQL driver"
        return f"{self.target} uses " + ", ".join(
            f"{d.module} {d.version} {d.impl} ({d.wait_function}, imported {d.when})"
            for d in self.drivers)


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
    slices: Slices | None = None  # None in results of schema gevent-probe/2
    deadlock: Deadlock | None = None  # the process froze: see Deadlock
    contention: Contention | None = None
    http: HttpView | None = None  # `run` only
    workers: tuple[WorkerSummary, ...] = ()  # `run` only
    app_drivers: tuple[AppDriver, ...] = ()  # `run --app`: what the user's app imported
    missing: tuple[str, ...] = ()  # signals the measured processes could not take here
    problems: tuple[str, ...] = ()  # why these numbers cannot be trusted, found while measuring
    histograms: dict[str, str] = field(default_factory=dict)  # encoded HdrHistograms, µs
    wall_s: float = 0.0
