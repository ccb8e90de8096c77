"""What measured processes report: raw records sent over a pipe or left in a file.

A bench worker (probe.worker) gets a WorkerJob on stdin and answers one WorkerReply on its
pipe; a gunicorn worker's agent (probe.agent) answers the tool's routes with ProbeReports and
leaves an AgentReport when it exits. probe.aggregate turns them into the results of probe.model;
they never reach results.json themselves. They go through probe.model's to_dict / from_dict,
the one JSON mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from probe.measurement import (
    AppDriver,
    Connections,
    Connects,
    Culprit,
    Deadlock,
    HeldSlice,
    Runtime,
    StallEvent,
)


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
    stalls: int  # not preempted
    stalled_ms: float
    max_ms: float
    kinds: dict[str, int] = field(default_factory=dict)  # stalls by kind
    preempted_ms: float = 0.0
    events: tuple[StallEvent, ...] = ()
    seconds: tuple[SecondLag, ...] = ()
    slices: SliceReport | None = None
    missing: tuple[str, ...] = ()  # signals this process could not take, and what it means


@dataclass(frozen=True)
class SecondSlices:
    t: int  # Unix time, whole seconds
    busy_ms: float  # greenlets' slices that ended in this second
    blocked_ms: float  # held slices that began in it, by kind
    computing_ms: float


@dataclass(frozen=True)
class SliceReport:
    """Greenlet run slices of one measured process over the time watched (probe.slices)."""

    threshold_ms: float
    watched_s: float
    count: int
    busy_s: float
    cpu_s: float  # the hub thread's CPU
    runq_s: float  # the hub thread's time waiting for a CPU
    slices_hdr: str  # µs per greenlet slice
    held: dict[str, int] = field(default_factory=dict)  # held slices by kind
    held_ms: dict[str, float] = field(default_factory=dict)
    longest: tuple[HeldSlice, ...] = ()
    events: tuple[HeldSlice, ...] = ()
    culprits: tuple[Culprit, ...] = ()
    connects: Connects | None = None
    seconds: tuple[SecondSlices, ...] = ()


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
    workload: str = "select1"
    errors_by_message: dict[str, int] = field(default_factory=dict)
    units_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerReport:
    """What one bench worker process sends back on its pipe."""

    variant: str
    connections: Connections
    probe: ProbeReport
    monitor: MonitorReport
    load: LoadReport


@dataclass(frozen=True)
class WorkerJob:
    """What a bench worker (probe.worker) is asked to do, as JSON on its stdin: nothing of the
    DSN shows in `ps`. `check_only`: import the driver in the variant's order and say what
    runs (availability), measure nothing."""

    variant: str
    check_only: bool = False
    dsn: str = ""
    concurrency: int = 16
    connections: Connections = "per-greenlet"
    queries: int | None = None  # per greenlet; None: for `duration` seconds
    duration: float | None = None
    sleep_ms: float = 50.0
    rounds: int = 3
    block_threshold_ms: float = 10.0
    partial_block_ms: float = 2.0
    compute_ms: float = 15.0
    workload: str = "select1"
    deadlock_after_s: float = 5.0


@dataclass(frozen=True)
class WorkerReply:
    """A bench worker's one answer, as JSON on its pipe: exactly one field is set."""

    report: WorkerReport | None = None
    runtime: Runtime | None = None  # check_only: what the variant really runs
    unavailable: str | None = None  # the driver cannot be imported here, and why
    failed: str | None = None  # the measurement stopped: why, in one line
    deadlock: Deadlock | None = None  # sent by the watchdog's thread: the report never came


@dataclass(frozen=True)
class AgentReport:
    """What one gunicorn worker leaves in its stats folder when it exits (`run`)."""

    pid: int
    requests: dict[str, int]
    errors: dict[str, int]
    monitor: MonitorReport
    load: LoadReport  # its first_error is the app's first error
    app_drivers: tuple[AppDriver, ...] = ()  # drivers the app imported (not the probe)
    app_error: str | None = None  # the first exception the app logged, with its frame
