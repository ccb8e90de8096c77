"""Greenlet run slices: who held the gevent hub, for how long, and on the CPU or off it.

A slice is one greenlet's run, from the switch that started it to the switch that ended it.
Nothing else in the process runs meanwhile, so slices are the direct answer to "who held the
hub": a late heartbeat alone cannot tell one greenlet holding the loop from a saturated
worker, whose ready queue makes every greenlet wait although each runs a fraction of a
millisecond. A slice longer than the threshold is *held*, and classified by where the thread
spent it (probe.sched): asleep in a blocking call ("blocked": the driver bug this tool exists
for), on the CPU ("computing": code that does not yield), or waiting for a CPU ("preempted":
other processes had the cores, which no app change would fix; also the hub woken late
from an idle poll: see probe.frames.in_loop_poll; and time a VM's host took from the thread's
CPU, which the guest's clocks count as sleep: probe.sched.Steal).

Cost, measured on a 2-core VM: greenlet.settrace calls the hot path (probe.switch_clock) at
every switch: the wall clock, a sum and a bucket, ~0.25 µs a switch in C in a tight loop (less
than greenlet takes to call an empty Python function), ~0.7 µs in Python
(benchmarks/switch_cost.py). The thread's CPU clock and scheduler record are system calls,
and after a few ms of Python those cost 5-40 µs each (benchmarks/syscall_cost.py). So the
wall clock is read at every switch (every slice's length is exact), the other two at the end
of every held slice and, for the reading before it began: where the compiled clock's watch
thread runs (probe.alarm.ClockAlarm), by that thread every few ms (`use_snapshots`), the hub
reading none between held slices; elsewhere by the hub itself, at most once per
`clocks_every_s` (half the threshold). Either way a held slice's split on and off the CPU
comes from a reading taken about half a threshold before it began at most, and never
overstates blocking (`_held`). The pytest guard, where cost does not matter, reads them
itself every quarter. `precise()` reads them at every switch, for the probe's own queries (a
block of 0.5 ms per query must be measured). The whole watch cost a saturated sample app
5.7% of its throughput in a run here (this VM's host moves that by a point or two), 2.1% less
CPU per request than with the Python hot path and the hub reading its own clocks, side by
side (benchmarks/overhead.py prices each part).

Stacks: the monitor's watchdog thread samples the hub thread's stack while a slice runs past
`sample_from_s` (probe.monitor), and hands them to `add_sample`; a held slice keeps the
frames sampled during it and where it finally switched out. The watchdog cannot sample while
Python's garbage collector runs (it holds the GIL throughout), and in real apps a full
collection is often the longest slice there is: the collector's counters (gc.get_count, read
at every slow path) tell whether an older generation was collected during a held slice, which
then names it. (A gc.callbacks hook would time it exactly, but calls Python at every young
collection: 8% of a small app's throughput here.)

The watchdog sleeps on an alarm (probe.alarm): the compiled clock's own watch, or a kernel
timer (`alarm`) that the slow path pushes back at every run. Either fires only when no switch
happened for about `sample_from` seconds, i.e. while one slice runs.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import greenlet

from probe import stats
from probe.alarm import Alarm
from probe.frames import (
    MAX_CULPRITS,
    MAX_LONGEST,
    RawFrame,
    RawStack,
    culprit_line,
    format_stack,
    frame_text,
    innermost,
    walk,
)
from probe.measurement import MAX_EVENTS, Connects, Culprit, HeldKind, HeldSlice
from probe.messages import SecondSlices, SliceReport
from probe.sched import SchedStat, Steal, held_kind
from probe.switch_clock import NEVER, new_clock

KINDS: tuple[HeldKind, ...] = typing.get_args(HeldKind)
MAX_SECONDS = 3700
MAX_SAMPLES = 4  # distinct frames sampled during one slice
STEAL_EVERY_NS = 10_000_000  # /proc/stat counts steal in 10 ms ticks: no use reading it more often

_perf_ns = time.perf_counter_ns
_tiebreak = itertools.count()


class SliceTracer:
    """Install with `start()` in the thread whose hub it watches (the main thread)."""

    def __init__(self, threshold_s: float = 0.01, refresh_s: float | None = None,
                 clocks_every_s: float | None = None, compiled: bool = True) -> None:
        import gevent

        self.hub = gevent.get_hub()
        # The hot path (probe.switch_clock): every switch's clock and count; it calls the
        # slow path when due. `compiled`: False for the Python one even where C was built.
        self.clock = new_clock(self.hub, self._slow_path, lambda us: None, compiled)
        self.threshold_ns = self.clock.threshold_ns = int(threshold_s * 1e9)
        # The slow path, a quarter of the threshold: the watchdog's alarm (half the
        # threshold) is pushed back twice before it could fire, and the busy time and the
        # longest slice are kept up to date.
        refresh = refresh_s if refresh_s is not None else threshold_s / 4
        self._refresh_ns = self._lazy_refresh_ns = int(refresh * 1e9)
        # The clocks, every other slow path by default: a held slice's split is known to
        # within half of the shortest one that counts, at up to 200 reads a second. Read at
        # every slow path (400 a second), and the steal file every 10 ms, a saturated sample
        # app spent 2.2% (1.4 to 2.9) more CPU per request (benchmarks/overhead.py
        # --against, side by side); the steal file is read four times rarer still (~10 µs
        # back to back, 30-40 µs in an app: benchmarks/syscall_cost.py).
        clocks_every = clocks_every_s if clocks_every_s is not None else 2 * refresh
        self._clocks_ns = max(self._refresh_ns, int(clocks_every * 1e9))
        self._steal_every_ns = max(STEAL_EVERY_NS, 4 * self._clocks_ns)
        self._sched = SchedStat()
        # Without the scheduler's record nothing is called preempted (sched.MISSING), stolen
        # time included.
        self._steal = Steal() if self._sched.knows_runq else None
        self._previous: Callable[[str, Any], Any] | None = None
        self._installed = False
        self._blocked: dict[int, int] | None = None  # precise(): id(greenlet) -> ns blocked
        self._snapshot_before: Callable[[int], tuple[int, int, int] | None] | None = None
        self._tags: dict[int, list[int]] = {}  # id(greenlet) in a tagged call -> its stats
        self.alarm: Alarm | None = None  # pushed back at every read (probe.monitor's watchdog)
        self.alarm_after_s = 0.0
        self.reset()

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> SliceTracer:
        if not self._installed:
            self._previous = greenlet.settrace(self.clock.entry)
            self.clock.previous = self._previous
            self._installed = True
        return self

    def stop(self) -> None:
        """For good: the clocks' files are closed, started or not."""
        if self._installed:
            greenlet.settrace(self._previous)
            self._installed = False
        self._sched.close()
        if self._steal is not None:
            self._steal.close()

    def reset(self) -> None:
        """Forget what was seen so far: the next report covers from now on."""
        now = _perf_ns()
        self._unix_offset = time.time_ns() - now
        self.since = now
        self.clock.start_ns = now  # when the current slice began
        self._read_at = self._slow_at = now  # the clocks' last read; the slow path's
        self._cpu, self._runq = self._sched.read_ns()
        self._cpu0, self._runq0 = self._cpu, self._runq
        self._steal_at, self._stolen = now, self._read_steal()
        self._schedule_read()
        self.clock.clear()  # its buckets, and the busy time: greenlets' slices (not the hub's)
        self._large = stats.new_histogram()  # slices the clock's buckets do not count
        self.clock.large = self._large.record_value
        self.held_count = dict.fromkeys(KINDS, 0)
        self.held_ns = dict.fromkeys(KINDS, 0)
        self._longest: list[tuple[int, int, _Held]] = []  # min-heap of the longest
        self._events: list[HeldSlice] = []
        self._seconds: dict[int, list[int]] = {}  # Unix second -> [busy ns, held ns by kind]
        self._busy_seen = 0  # busy_ns already put in a second
        self.mark_ns = 0  # the longest slice since take_mark(), for the heartbeat
        self.mark_kind: HeldKind | None = None
        self._samples: tuple[int, tuple[RawStack, ...]] = (-1, ())  # (slice's start, stacks)
        self._polling = (-1, False)  # slice's start, every sample of it in the loop's idle poll
        self._gc_count = gc.get_count()  # as of the last slow path
        if self.alarm is not None:  # a run that starts now is watched even if none follows
            self.alarm.arm(self.alarm_after_s)
        # (file, function, sampled) -> [held slices, first frame, first stack]
        self._culprits: dict[tuple[str, str, bool], list[Any]] = {}
        self.connects = [0, 0, 0, 0, 0]  # calls, call ns, held ns, cpu ns, longest slice ns

    # -- what the hot path calls (probe.switch_clock) -----------------------------------------

    @property
    def start_ns(self) -> int:
        """When the current slice began: its name."""
        return self.clock.start_ns

    @property
    def busy_ns(self) -> int:
        """Greenlets' slices (not the hub's own runs) since the last reset."""
        return self.clock.busy_ns

    def tick(self) -> None:
        """A boundary in the hub's own run, from the heartbeat's callback (which the hub runs
        without a switch): an idle hub waits in the event loop between beats, and must not
        read as one long run asleep."""
        if not self._installed:
            return
        clock = self.clock
        now = _perf_ns()
        started = clock.start_ns
        if now >= clock.next_read:
            self._slow_path((self.hub, self.hub), started, now, now - started)
        clock.start_ns = now

    def _slow_path(self, args: Any, started: int, now: int, wall: int) -> None:
        origin, target = args
        tags = self._tags
        tagged = id(origin) in tags or id(target) in tags
        held = wall >= self.threshold_ns
        if not tagged and not held and now - self._slow_at < self._refresh_ns:
            return
        self._slow_at = now
        if (tagged or held or self._blocked is not None
                or now - self._read_at >= self._clocks_ns):
            self._read_and_account(origin, started, now, wall)
        if wall > self.mark_ns:  # a held slice marked itself, with its kind
            self.mark_ns, self.mark_kind = wall, None
        if self._steal is not None and now - self._steal_at >= self._steal_every_ns:
            self._steal_at, self._stolen = now, self._steal.read()
        self._gc_count = gc.get_count()
        self._add_busy(now)
        self._schedule_read()
        if self.alarm is not None:
            self._arm_alarm(self.alarm)

    def _read_and_account(self, origin: Any, started: int, now: int, wall: int) -> None:
        """The clocks, and what needs them: a held slice's split, the probe's blocked time, a
        tagged call's CPU. Between two reads the slow path needs none of them."""
        tags = self._tags
        cpu, runq = self._sched.read_ns()
        if self._blocked is not None:
            asleep = (now - self._read_at) - (cpu - self._cpu) - (runq - self._runq)
            key = id(origin)
            self._blocked[key] = self._blocked.get(key, 0) + asleep
        if wall >= self.threshold_ns:
            self._held(origin, origin is self.hub, started, wall, now, cpu, runq,
                       in_connect=id(origin) in tags)
        if id(origin) in tags:
            self._tagged_slice(tags[id(origin)], wall, cpu - self._cpu)
        self._read_at, self._cpu, self._runq = now, cpu, runq

    def _arm_alarm(self, alarm: Alarm) -> None:
        # Up to a refresh period may pass before the next slow path re-arms it, so the slice
        # running then may be that much younger: armed for less, the alarm would wake the
        # watchdog early, for nothing, and each wake takes the GIL from the hub (on a core
        # shared with another busy process, 600 wakes in 8 s instead of 18: the watch cost a
        # saturated sample app 14.1% instead of 8.9%, benchmarks/overhead.py).
        alarm.arm(self.alarm_after_s + self._refresh_ns / 1e9)

    def _schedule_read(self) -> None:
        """When the hot path must next call the slow path: at every switch while a tagged
        call runs (a connect), else once the refresh period passed."""
        self.clock.next_read = 0 if self._tags else self._slow_at + self._refresh_ns

    @property
    def count(self) -> int:
        """Greenlet slices since the last reset (the hub's own runs are not counted)."""
        return self.clock.counted() + int(self._large.get_total_count())

    def _add_busy(self, now: int) -> None:
        """Busy time per Unix second, for the load window of `run`: what the greenlets ran
        since the last read goes to the second of this read (at most a refresh period off)."""
        second = (now + self._unix_offset) // 1_000_000_000
        entry = self._second_entry(second)
        if entry is not None:
            entry[0] += self.busy_ns - self._busy_seen
        self._busy_seen = self.busy_ns

    def _second_entry(self, second: int) -> list[int] | None:
        entry = self._seconds.get(second)
        if entry is None and len(self._seconds) < MAX_SECONDS:
            entry = self._seconds[second] = [0, 0, 0, 0]
        return entry

    def _held(self, origin: Any, hub: bool, started_ns: int, wall: int, now: int, cpu: int,
              runq: int, in_connect: bool = False) -> None:
        """A slice past the threshold: classify it from the clocks read since `_read_at`,
        which is at most `clocks_every_s` before the slice began. That lead-in is taken off the
        time asleep (the hub may have idled then), so the split never overstates blocking.
        Stacks stay raw (file, line, function) until the report formats them: reading source
        lines here would lengthen the next slice."""
        read_at, cpu0, runq0 = self._reading_before(started_ns)
        lead_in = started_ns - read_at
        on_cpu = min(cpu - cpu0, wall)
        runq_ns = min(runq - runq0, wall)
        asleep = max(0, (now - read_at) - (cpu - cpu0) - (runq - runq0) - lead_in)
        # What the VM's host took while the thread seemed asleep was a wait for a CPU. The
        # read before is up to a steal period older than `_read_at`: a tick that fell then is
        # taken off too, which can only move a run away from "blocked".
        stolen = min(asleep, self._stolen_since(now))
        asleep, runq_ns = asleep - stolen, min(runq_ns + stolen, wall)
        known, sampled = self._samples
        stacks = sampled if known == started_ns else ()
        kind = held_kind(on_cpu, runq_ns, asleep)
        if hub and kind == "blocked" and stacks and self._polling == (started_ns, True) \
                and self._sched.knows_runq:  # without it nothing is called preempted (MISSING)
            kind = "preempted"  # woken late from an idle poll: see in_loop_poll
        self.held_count[kind] += 1
        self.held_ns[kind] += wall
        if wall > self.mark_ns:
            self.mark_ns, self.mark_kind = wall, kind
        # Only full collections are named: the young ones take well under a millisecond.
        collector = ("Python's garbage collector: a full (generation-2) collection ran in this "
                     "slice") if collected_generation(self._gc_count, gc.get_count()) == 2 \
            else None
        frame = getattr(origin, "gr_frame", None)
        yielded = walk(frame) if frame is not None else ()
        started = (started_ns + self._unix_offset) / 1e9
        entry = self._second_entry(int(started))
        if entry is not None:
            entry[1 + KINDS.index(kind)] += wall
        if len(self._events) < MAX_EVENTS:
            self._events.append(HeldSlice(t=round(started, 4), ms=round(wall / 1e6, 3),
                                          kind=kind))
        record = _Held(started, wall, kind, on_cpu, asleep, runq_ns, hub, collector, stacks,
                       yielded, in_connect)
        if kind != "preempted":
            self._count_culprit(collector or innermost(stacks[0] if stacks else yielded),
                                stacks[0] if stacks else (), bool(collector or stacks))
        item = (wall, next(_tiebreak), record)
        if len(self._longest) < MAX_LONGEST:
            heapq.heappush(self._longest, item)
        elif wall > self._longest[0][0]:
            heapq.heapreplace(self._longest, item)

    def _reading_before(self, started_ns: int) -> tuple[int, int, int]:
        """(perf ns, CPU ns, run-queue ns): the latest reading of the clocks before a slice
        began, ours or the clock thread's (use_snapshots)."""
        ours = self._read_at, self._cpu, self._runq
        if self._snapshot_before is None:
            return ours
        theirs = self._snapshot_before(started_ns)
        return theirs if theirs is not None and theirs[0] > ours[0] else ours

    def use_snapshots(self, snapshot_before: Callable[[int], tuple[int, int, int] | None],
                      refresh_s: float) -> None:
        """Another thread reads the hub thread's clocks (the compiled clock's watch:
        probe.alarm.ClockAlarm): `snapshot_before(t)` gives its latest reading at t or before
        (t=0: its latest). The hub then reads them itself only at the end of a held slice
        (and of a tagged or precise one), and the slow path runs every `refresh_s`, for the
        busy time per second, the collector's counts and, every fifth, the steal file (the
        steal of a held slice is then counted since up to five periods before it began,
        which can only move it away from "blocked"; read as often as the clocks were, it was
        ~0.6% of a saturated worker's samples)."""
        self._snapshot_before = snapshot_before
        self._clocks_ns = NEVER
        self._refresh_ns = self._lazy_refresh_ns = int(refresh_s * 1e9)
        self._steal_every_ns = max(STEAL_EVERY_NS, 5 * self._refresh_ns)
        self._schedule_read()

    def _read_steal(self) -> tuple[int, ...]:
        return self._steal.read() if self._steal is not None else ()

    def _stolen_since(self, now: int) -> int:
        if self._steal is None:
            return 0
        before, self._stolen = self._stolen, self._steal.read()
        self._steal_at = now
        return self._steal.between_ns(before, self._stolen)

    def _tagged_slice(self, entry: list[int], wall: int, cpu: int) -> None:
        entry[2] += wall
        entry[3] += min(cpu, wall)
        entry[4] = max(entry[4], wall)

    # -- what the watchdog and the heartbeat use ------------------------------------------------

    def add_sample(self, start_ns: int, stack: RawStack, polling: bool = False) -> None:
        """A stack of the hub thread, sampled by another thread while the slice that began at
        `start_ns` (its name: no two begin in the same ns) ran; `polling`: the thread was then
        in the event loop's idle poll (frames.in_loop_poll)."""
        known, stacks = self._samples
        stacks = stacks if known == start_ns else ()
        if len(stacks) < MAX_SAMPLES:
            self._samples = (start_ns, (*stacks, stack))
        self._polling = (start_ns, polling and (self._polling[1] if self._polling[0] == start_ns
                                                else True))

    @property
    def refresh_ns(self) -> int:
        return self._refresh_ns

    @property
    def knows_runq(self) -> bool:
        return self._sched.knows_runq

    def clocks(self) -> tuple[int, int, int]:
        """(perf ns, CPU ns, run-queue ns) as last read, by us or the clock thread: free, at
        most `clocks_every_s` old (or the clock thread's period)."""
        return self._reading_before(0) if self._snapshot_before is not None else \
            (self._read_at, self._cpu, self._runq)

    def read_clocks(self) -> tuple[int, int]:
        """(CPU ns, run-queue ns) of the hub thread now (call from the hub thread)."""
        return self._sched.read_ns()

    def take_mark(self) -> tuple[int, HeldKind | None]:
        """(ns, kind) of the longest slice since the last call; kind None under the threshold."""
        mark = self.mark_ns, self.mark_kind
        self.mark_ns, self.mark_kind = 0, None
        return mark

    # -- tagged calls (connects) ----------------------------------------------------------------

    @contextmanager
    def within_connect(self) -> Iterator[None]:
        """Count the slices the current greenlet runs inside a connect as the connect's."""
        key = id(greenlet.getcurrent())
        entry = self._tags.get(key)
        if entry is not None:  # nested (a pool's connect calling the driver's): count once
            yield
            return
        entry = self._tags[key] = self.connects
        self._schedule_read()
        start = _perf_ns()
        try:
            yield
        finally:
            del self._tags[key]
            self._schedule_read()
            entry[0] += 1
            entry[1] += _perf_ns() - start

    # -- precise mode: the probe's own queries --------------------------------------------------

    @contextmanager
    def precise(self) -> Iterator[BlockedClock]:
        """Read every clock at every switch, and keep per greenlet the time it held the hub
        while its thread slept in the kernel."""
        self._refresh_ns = 0
        self._schedule_read()
        self._blocked = {}
        try:
            yield BlockedClock(self)
        finally:
            self._blocked = None
            self._refresh_ns = self._lazy_refresh_ns
            self._schedule_read()

    def blocked_ns(self) -> int:
        """Blocked ns of the running greenlet so far, its current run included."""
        assert self._blocked is not None
        cpu, runq = self._sched.read_ns()
        now = _perf_ns()
        current = (now - self._read_at) - (cpu - self._cpu) - (runq - self._runq)
        return self._blocked.get(id(greenlet.getcurrent()), 0) + current

    # -- the report ---------------------------------------------------------------------------

    def report(self) -> SliceReport:
        now = _perf_ns()
        self._add_busy(now)
        cpu, runq = self._sched.read_ns() if self._installed else (self._cpu, self._runq)
        hist = stats.new_histogram()
        hist.add(self._large)
        for lower, width, n in self.clock.buckets():  # each at its middle
            hist.record_value(max(1, (lower + width // 2) // 1000), n)
        longest = tuple(r.formatted() for _, _, r in sorted(self._longest, reverse=True))
        calls, call_ns, held, cpu_ns, top = self.connects
        return SliceReport(
            threshold_ms=self.threshold_ns / 1e6,
            watched_s=round((now - self.since) / 1e9, 6),
            count=self.count, busy_s=round(self.busy_ns / 1e9, 6),
            cpu_s=round((cpu - self._cpu0) / 1e9, 6), runq_s=round((runq - self._runq0) / 1e9, 6),
            slices_hdr=stats.encode(hist),
            held={k: n for k, n in self.held_count.items() if n},
            held_ms={k: round(ns / 1e6, 3) for k, ns in self.held_ns.items() if ns},
            longest=longest, events=tuple(self._events),
            culprits=self.culprits(),
            connects=Connects(calls=calls, call_ms=round(call_ns / 1e6, 3),
                              held_ms=round(held / 1e6, 3), cpu_ms=round(cpu_ns / 1e6, 3),
                              longest_ms=round(top / 1e6, 3)) if calls else None,
            seconds=tuple(SecondSlices(t=t, busy_ms=round(v[0] / 1e6, 3),
                                       blocked_ms=round(v[1] / 1e6, 3),
                                       computing_ms=round(v[2] / 1e6, 3))
                          for t, v in sorted(self._seconds.items())),
        )

    def _count_culprit(self, where: RawFrame | str, stack: RawStack, sampled: bool) -> None:
        """Counted by function, not line: a loop sampled at many lines is one culprit, and
        must not lose to the one line where unsampled slices all switched out."""
        key = (where[0], where[2], sampled) if isinstance(where, tuple) else (where, "", True)
        known = self._culprits.setdefault(key, [0, where, stack])
        known[0] += 1

    def culprits(self) -> tuple[Culprit, ...]:
        """Where held slices (not preempted ones) were sampled, most often first; then where
        unsampled ones switched out."""
        ranked = sorted(self._culprits.items(), key=lambda kv: (not kv[0][2], -kv[1][0]))
        return tuple(Culprit(frame=frame_text(where), count=n, stack=format_stack(stack),
                             sampled=key[2]) for key, (n, where, stack) in ranked[:MAX_CULPRITS])


def collected_generation(before: tuple[int, int, int], after: tuple[int, int, int]) -> int:
    """The oldest generation collected between two gc.get_count() readings, 0 for none older
    than the youngest. The counts are (allocations, young collections since the last middle
    one, middle collections since the last full one): a middle collection resets the second
    and raises the third; a full one resets both."""
    if after[2] < before[2] or (after[2] == before[2] and after[1] < before[1]):
        return 2
    if after[2] > before[2]:
        return 1
    return 0


@dataclass(frozen=True)
class _Held:
    """A held slice as the trace function leaves it: clocks, and stacks not yet formatted."""

    started: float
    wall: int
    kind: HeldKind
    on_cpu: int
    asleep: int
    runq: int
    hub: bool
    collector: str | None
    stacks: tuple[RawStack, ...]
    yielded: RawStack
    in_connect: bool

    def formatted(self) -> HeldSlice:
        lines = [format_stack(s) for s in self.stacks]
        frames = [f for f in (culprit_line(s) for s in lines) if f]
        if self.collector:
            frames.insert(0, self.collector)
        yielded = format_stack(self.yielded)
        return HeldSlice(t=round(self.started, 4), ms=round(self.wall / 1e6, 3), kind=self.kind,
                         on_cpu_ms=round(self.on_cpu / 1e6, 3),
                         off_cpu_ms=round(self.asleep / 1e6, 3),
                         runq_ms=round(self.runq / 1e6, 3), hub=self.hub,
                         in_connect=self.in_connect,
                         frames=tuple(dict.fromkeys(frames)), stack=lines[0] if lines else (),
                         yielded_at=culprit_line(yielded) if yielded else None)


class BlockedClock:
    """The probe's per-call view of precise mode: how long a call held the hub while its
    thread slept in the kernel (~0 for a cooperative driver whatever its CPU work)."""

    def __init__(self, tracer: SliceTracer) -> None:
        self._tracer = tracer

    @contextmanager
    def call(self, record: Callable[[int], Any]) -> Iterator[None]:
        """Time the blocked part of the enclosed call; record(µs) when it returns."""
        start = self._tracer.blocked_ns()
        yield
        record(max(0, (self._tracer.blocked_ns() - start) // 1000))
