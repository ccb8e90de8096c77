"""Who held the gevent hub, and what the others waited: slices, a heartbeat and a watchdog.

Imported only after gevent has patched the process (bench worker, gunicorn workers, the
pytest plugin's guarded tests).

Three views, because each misses what the others see:
- the slice tracer (probe.slices) records every greenlet run, switch to switch, and splits
  the long ones by where the thread spent them (asleep, on the CPU, waiting for one). That is
  the verdict's signal: one greenlet holding the hub is a long slice; a saturated worker is
  many short ones;
- the heartbeat greenlet asks to wake every `interval` and records how late it woke: what any
  other request waited, to a fraction of a millisecond, in an HdrHistogram corrected for
  coordinated omission (a 1 s stall also stands for the ~1000 beats it prevented). Each late
  wake is attributed to the longest slice that ran during it: held by that slice when it was
  past the threshold, else "queued" (the ready queue), or "preempted" when the thread mostly
  waited for a CPU (probe.sched). Lateness alone never decides a verdict;
- the watchdog, a real OS thread, sleeps until a slice has run past `sample_from` (a kernel
  timer the tracer keeps pushing back: probe.alarm), then samples the hub thread's stack,
  several times for a long one: the frames that held the hub, which is the
  evidence a reader needs. It never takes a lock the hub needs, so it cannot add to the stall
  it is looking at. It is the technique of gevent's own monitor thread (gevent/_monitor.py),
  driven by the slice tracer instead of a switch counter; gevent's thread checks every 100 ms
  and reports its threshold, not the measured block.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

import gevent
import greenlet
from gevent.monkey import get_original
from hdrh.histogram import HdrHistogram

from probe import sched, stats
from probe.alarm import Alarm, new_alarm
from probe.frames import format_stack, in_loop_poll, sample_stack, walk
from probe.measurement import MAX_EVENTS, Deadlock, StallEvent, StallKind
from probe.messages import MonitorReport, SecondLag
from probe.slices import SliceTracer

MAX_SECONDS = 3700
PARTS = ("tracer", "heartbeat", "watchdog")
RESAMPLE_S = 0.005  # a slice still running is sampled again this often (up to MAX_SAMPLES)
# The heartbeat's period. Its lateness is measured to the microsecond whatever the period;
# the period sets how often it looks (a stall can be under-reported by up to one period) and
# what it costs: waking every millisecond cost 5% of a core in an idle worker here, and 1.5%
# of a saturated one's samples. The verdicts come from slices, so it looks every 5 ms; the
# pytest guard, where cost does not matter, every millisecond.
HEARTBEAT_S = 0.005
# Nothing completed for this long while work was pending: a deadlock (well under gunicorn's
# --timeout, 30 s by default, which would kill the worker with no word of why).
DEADLOCK_AFTER_S = 5.0
MAX_GREENLETS = 12  # distinct waiting stacks kept in a deadlock's report
# A watchdog wake that finds the hub was preempted (it waited for a CPU most of the time
# since its clocks were read) is wasted, and costly: the watchdog needs the GIL, which the
# hub, preempted in Python, holds. Beside a worker that wakes so, one that pushes its alarm
# further after each such wake (doubling, up to the threshold, for a second) spent 8.6%
# (7.7 to 9.5) less CPU per request, with three busy workers on one core
# (benchmarks/overhead.py --against). The price: in such a second, a held slice is first
# sampled up to the threshold later.
BACK_OFF_FOR_NS = 1_000_000_000

_start_thread = get_original("_thread", "start_new_thread")
_thread_sleep = get_original("time", "sleep")
_get_ident = get_original("_thread", "get_ident")
_get_native_id = get_original("_thread", "get_native_id")


class LoopMonitor:
    def __init__(self, interval_s: float = HEARTBEAT_S, threshold_s: float = 0.01,
                 sample_from_s: float | None = None,
                 deadlock_after_s: float = DEADLOCK_AFTER_S,
                 clocks_every_s: float | None = None, compiled: bool = True) -> None:
        """`compiled`: False for the slice tracer's Python hot path (probe.switch_clock), and so
        the kernel timer's alarm, even where the C one was built."""
        self.interval_s = interval_s
        self.threshold_s = threshold_s
        # Stacks are sampled from half the threshold on: a slice that ends up held was
        # sampled while it ran, early enough to see where it began (a connect, a query). Not
        # later: the watchdog needs the GIL, which a computing hub gives up only after the
        # switch interval (5 ms), so sampled from the threshold a 15 ms loop ends unseen.
        self.sample_from_s = sample_from_s if sample_from_s is not None else threshold_s / 2
        self._hub_ident = _get_ident()
        self._hub_tid = _get_native_id()  # the kernel's name for the hub's thread (its wchan)
        self.tracer = SliceTracer(threshold_s, clocks_every_s=clocks_every_s, compiled=compiled)
        self._clocks_every_s = clocks_every_s
        self.alarm = new_alarm(self.tracer.clock, poll_s=self.sample_from_s)
        self._timer: Any = None  # the heartbeat: a repeating libev timer
        # No progress for this long while work is pending is a deadlock (watch_progress).
        self.deadlock_after_s = deadlock_after_s
        self.on_deadlock: Callable[[Deadlock], None] | None = None
        self._progress: Callable[[], int | None] | None = None
        self._progress_seen = (0, 0.0)  # (count, when it last changed)
        self._deadlocked = False
        self._beat_second, self._beat_second_max = -1, 0.0
        self._running = False
        self._back_off_ns, self._backed_off_at = 0, 0  # the watchdog's (_judge_wake)
        self.reset()

    def start(self, without: Collection[str] = ()) -> LoopMonitor:
        """`without`: PARTS left out, only to measure what each one costs."""
        self._running = True
        if "watchdog" in without:
            self.alarm.close()  # nobody would wait on it
        elif isinstance(self.alarm, Alarm):  # a timer the tracer pushes back
            self.tracer.alarm = self.alarm
            self.alarm.arm(self.sample_from_s)  # the run going on now is watched too
        self._alarm_after(self.sample_from_s)
        if self.alarm.follows_clock and self._clocks_every_s is None:
            # The compiled clock's thread reads the hub's clocks: the slow path runs once per
            # threshold, not four times, and reads none (what that saves: probe.switch_clock).
            self.tracer.use_snapshots(self.tracer.clock.snapshot_before,  # type: ignore[attr-defined]
                                      self.threshold_s)
        if "tracer" not in without:
            self.tracer.start()
        self._timer = gevent.get_hub().loop.timer(self.interval_s, self.interval_s)
        self._beat_at = time.perf_counter()
        self._clocks = self.tracer.clocks()
        if "heartbeat" not in without:
            self._timer.start(self._beat)
        if "watchdog" not in without:
            _start_thread(self._watch, ())
        gevent.sleep(0)  # let the loop run once: a block right after counts
        return self

    def stop(self) -> None:
        if self._running:
            self._running = False
            self.tracer.alarm = None
            self.alarm.wake()  # the watchdog sees it must stop, and closes the alarm
        self.tracer.stop()
        if self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = None
            self._second(self._beat_second, self._beat_second_max, 0.0)

    def reset(self) -> None:
        """Forget what was seen so far (between a warm-up and the measurement)."""
        self.lag = stats.new_histogram()  # µs late past one interval, corrected for CO
        self._on_time = [0] * max(1, int(self.interval_s * 1e6))  # µs late, under an interval
        self.stalls = 0
        self.stalled_s = 0.0
        self.preempted_s = 0.0
        self.kinds: Counter[str] = Counter()
        self.max_s = 0.0
        self.events: list[StallEvent] = []
        self.seconds: dict[int, list[float]] = {}  # Unix second -> [max lag ms, stalled ms]
        self._unix_offset = time.time() - time.perf_counter()
        self.tracer.reset()
        self._since = time.perf_counter()

    # -- no progress: a deadlock ------------------------------------------------------------

    def watch_progress(self, progress: Callable[[], int | None] | None) -> None:
        """`progress()` counts what completed, or is None while nothing is pending; when it
        stops moving for deadlock_after_s with work pending, on_deadlock gets the stacks."""
        self._progress = progress
        self._progress_seen = (progress() or 0 if progress else 0, time.perf_counter())

    def _pending(self) -> bool:
        progress = self._progress
        return progress is not None and progress() is not None

    def _check_progress(self, now: float) -> None:
        """From the heartbeat: the hub runs, yet nothing completes (greenlets wait on each
        other: a lock cycle through the server, an OS lock)."""
        progress = self._progress
        if progress is None or self._deadlocked:
            return
        count, since = self._progress_seen
        current = progress()
        if current is None:  # nothing pending: idle, not stuck
            self._progress_seen = (count, now)
        elif current != count:
            self._progress_seen = (current, now)
        elif now - since > self.deadlock_after_s:
            self._deadlock("stalled", now - since)

    def _deadlock(self, how: str, after_s: float) -> None:
        """Once per process: the stacks of the hub thread and of every greenlet, to whoever
        reports it (the bench worker's pipe, the agent's folder)."""
        if self._deadlocked:
            return
        self._deadlocked = True
        hub = format_stack(sample_stack(self._hub_ident) or ())
        stacks = [format_stack(walk(g.gr_frame)) for g in gc.get_objects()
                  if isinstance(g, greenlet.greenlet) and g.gr_frame is not None]
        waiting = tuple(dict.fromkeys(s for s in stacks if s and s != hub))[:MAX_GREENLETS]
        if self.on_deadlock is not None:
            self.on_deadlock(Deadlock(after_s=round(after_s, 3), how=how, hub_stack=hub,
                                      greenlets=waiting))

    # -- the heartbeat (a timer on the hub) ---------------------------------------------------

    def _beat(self) -> None:
        """A repeating timer's callback, run by the hub itself (no greenlet, no switch: a
        beat costs a clock read and a count; a late one is recorded in full). libev re-arms it
        one interval after each run, so lateness is the time since the last run, minus one
        interval: what any callback or greenlet that became ready meanwhile waited."""
        now = time.perf_counter()
        # A beat that began before a reset counts only for the part after it.
        late = min(now - self._beat_at, now - self._since) - self.interval_s
        self.tracer.tick()
        if self._back_off_ns and time.perf_counter_ns() - self._backed_off_at > BACK_OFF_FOR_NS:
            self._back_off_ns = 0
            self._alarm_after(self.sample_from_s)
        clocks, self._clocks = self._clocks, self.tracer.clocks()
        self._beat_at = now
        late_us = int(late * 1e6)
        if late_us < len(self._on_time):
            self._on_time[max(0, late_us)] += 1
        else:
            self.lag.record_corrected_value(late_us, len(self._on_time))
            if late > self.max_s:
                self.max_s = late
            if late > self.threshold_s:
                self._stall(late, self._stall_kind(clocks))
        self.tracer.mark_ns = 0  # the longest slice from here to the next beat (take_mark)
        second = int(now + self._unix_offset)
        if second != self._beat_second:
            self._second(self._beat_second, self._beat_second_max, 0.0)
            self._beat_second, self._beat_second_max = second, 0.0
        if late > self._beat_second_max:
            self._beat_second_max = late
        if self._progress is not None:
            self._check_progress(now)

    def _stall_kind(self, before: tuple[int, int, int]) -> StallKind:
        """What a late beat waited for: the slice that held the hub if one was that long,
        else the ready queue, unless the thread mostly waited for a CPU meanwhile."""
        held_ns, held_kind = self.tracer.take_mark()
        at, cpu, runq = before
        now = time.perf_counter_ns()
        # The latest reading, if it covers at least half of the beat's wait; else read now.
        read_at, now_cpu, now_runq = self.tracer.clocks()
        if read_at - at < (now - at) / 2:
            read_at, (now_cpu, now_runq) = now, self.tracer.read_clocks()
        wall = (read_at - at) / 1e9
        if stall_kind(wall, (cpu, runq), (now_cpu, now_runq)) == "preempted":
            return "preempted"
        return held_kind if held_ns >= self.tracer.threshold_ns and held_kind else "queued"

    def settle(self) -> None:
        """Let a heartbeat that is due run before a report: right after a stretch that blocked
        the hub, the last stall is only recorded once the heartbeat wakes."""
        gevent.sleep(self.interval_s * 3)

    def _stall(self, late: float, kind: StallKind) -> None:
        self.kinds[kind] += 1
        if kind == "preempted":
            self.preempted_s += late
        else:
            self.stalls += 1
            self.stalled_s += late
            self._second(int(time.time()), 0.0, late)
        if len(self.events) < MAX_EVENTS:
            self.events.append(StallEvent(t=round(time.time() - late, 4),
                                          ms=round(late * 1000, 3), kind=kind))

    def _second(self, t: int, late: float, stalled: float) -> None:
        if t < 0:
            return
        second = self.seconds.get(t)
        if second is None and len(self.seconds) < MAX_SECONDS:
            second = self.seconds[t] = [0.0, 0.0]
        if second is not None:
            second[0] = max(second[0], late * 1000)
            second[1] += stalled * 1000

    # -- the watchdog (a real OS thread) --------------------------------------------------------

    def _watch(self) -> None:
        # It keeps running while a C call holds the hub, as long as that call releases the GIL
        # (libpq waits do). It sleeps on the alarm, which fires only once no greenlet switch
        # happened for sample_from (probe.alarm), reads the tracer's current slice and hands
        # it stacks, then asks to be woken again RESAMPLE_S later if that slice goes on.
        tracer, alarm = self.tracer, self.alarm
        sample_from_ns = int(self.sample_from_s * 1e9)
        resample_ns = int(RESAMPLE_S * 1e9)
        sampled, sampled_at = -1, 0  # the slice last sampled, and when
        wchan = sched.Wchan(self._hub_tid)
        runq = sched.RunQueue(self._hub_tid)
        try:
            while self._running and alarm.wait():
                if not self._running:  # stop() clears it from another thread
                    break  # type: ignore[unreachable]
                start = tracer.start_ns  # the current slice's name
                now = time.perf_counter_ns()
                self._judge_wake(now, now - start < sample_from_ns, start == sampled,
                                 runq.read_ns())
                if now - start < sample_from_ns:  # armed as this slice began: nearly there
                    if not alarm.follows_clock:  # (the clock's thread watches every slice)
                        alarm.arm((sample_from_ns - (now - start)) / 1e9 + 1e-4)
                    continue
                if start == sampled and now - sampled_at < resample_ns:
                    alarm.arm((resample_ns - (now - sampled_at)) / 1e9)
                    continue
                if now - start > self.deadlock_after_s * 1e9 and self._pending():
                    self._deadlock("held", (now - start) / 1e9)  # the hub itself is stuck
                before = wchan.read()
                stack = sample_stack(self._hub_ident)
                if stack is not None and start == tracer.start_ns:
                    polling = in_loop_poll(stack, before, wchan.read())
                    tracer.add_sample(start, stack, polling)
                    sampled, sampled_at = start, now
                    alarm.arm(RESAMPLE_S)
        finally:
            wchan.close()
            runq.close()
            alarm.close()

    def _judge_wake(self, now: int, young: bool, sampled: bool, runq: int | None) -> None:
        """Back off after a wasted wake (BACK_OFF_FOR_NS); a slice too young to sample was
        one too: the hub switched while the watchdog waited for the GIL. Back to
        sample_from after a wake that finds a new slice held while the hub could run."""
        if runq is None:  # no schedstat: always wake at sample_from
            return
        at, _, runq_at = self.tracer.clocks()
        if young or runq - runq_at > (now - at) / 2:  # from a quarter of the threshold
            self._back_off_ns = min(max(2 * self._back_off_ns, self.tracer.threshold_ns // 4),
                                    self.tracer.threshold_ns)
            self._backed_off_at = now
        elif self._back_off_ns and not sampled:
            self._back_off_ns = 0
        self._alarm_after(self.sample_from_s + self._back_off_ns / 1e9)

    def _alarm_after(self, seconds: float) -> None:
        """When the watchdog wakes: a timer is armed for `seconds` plus a refresh period (a
        quarter of the threshold) at every slow path, so it fires 0 to one period past
        `seconds` into a slice; the clock's thread, which sees when the slice began, fires
        half a period past (an idle hub's runs, split by the heartbeat, stay shorter). Not
        later: a computing hub gives the watchdog the GIL only after the switch interval
        (5 ms), and the compute control's 15 ms loop went unsampled in a third of its runs
        when the clock's thread fired 10 ms into them."""
        self.tracer.alarm_after_s = seconds
        self.alarm.follow(seconds + self.threshold_s / 8)

    # -- the report ----------------------------------------------------------------------------

    def _lag(self) -> HdrHistogram:
        hist = stats.new_histogram()
        hist.add(self.lag)
        for us, n in enumerate(self._on_time):
            if n:
                hist.record_value(max(1, us), n)
        return hist

    def report(self) -> MonitorReport:
        lag = self._lag()
        return MonitorReport(
            interval_ms=self.interval_s * 1000,
            threshold_ms=self.threshold_s * 1000,
            watched_s=round(time.perf_counter() - self._since, 6),
            lag_hdr=stats.encode(lag),
            stalls=self.stalls,
            stalled_ms=round(self.stalled_s * 1000, 3),
            max_ms=round(max(self.max_s * 1000, lag.get_max_value() / 1000), 3),
            kinds=dict(self.kinds),
            preempted_ms=round(self.preempted_s * 1000, 3),
            events=tuple(self.events),
            seconds=tuple(SecondLag(t=t, max_ms=round(v[0], 3), stalled_ms=round(v[1], 3))
                          for t, v in sorted(self.seconds.items())),
            slices=self.tracer.report(),
            missing=() if self.tracer.knows_runq else (sched.MISSING,),
        )


def stall_kind(wall: float, before: tuple[int, int], after: tuple[int, int]) -> str:
    """busy, preempted or blocked: where the hub thread spent most of a late beat."""
    on_cpu = (after[0] - before[0]) / 1e9
    waiting_for_cpu = (after[1] - before[1]) / 1e9
    asleep = wall - on_cpu - waiting_for_cpu
    return max((on_cpu, "busy"), (waiting_for_cpu, "preempted"), (asleep, "blocked"))[1]
