"""Loop-lag heartbeat and a blocked-hub watchdog, for processes that run gevent.

Imported only after gevent has patched the process (bench worker, gunicorn workers, the
pytest plugin's guarded tests).

Two views of the same problem, because each misses what the other sees:
- the heartbeat greenlet asks to wake every `interval` and records how late it woke. That is
  the measurement: every stall of the hub, to a fraction of a millisecond, counted exactly
  (a stall is one late wake). The lateness goes into an HdrHistogram corrected for
  coordinated omission: a 1 s stall also stands for the ~1000 beats it prevented, so the
  percentiles describe time, not just the beats that happened to run;
- the watchdog, a real OS thread, notices when the heartbeat is overdue and samples the hub
  thread's stack at that moment: the frames that hold the hub, which is the evidence a reader
  needs to find the culprit. It never takes a lock the heartbeat needs, so it cannot add to
  the stall it is looking at.

Each stall is also classified by where the hub thread spent that beat (probe.sched): mostly
on the CPU is "busy" (code that computes without yielding), mostly waiting for a CPU is
"preempted" (other processes had the cores: the machine's noise, which no app change would
fix), mostly neither is "blocked" (asleep in a blocking call). Verdicts count blocked and
busy stalls only, so a busy machine cannot make a healthy driver look blocking.

The watchdog is the technique of gevent's own monitor thread (gevent/_monitor.py), driven by
our heartbeat instead of a greenlet-switch tracer; gevent's thread checks every 100 ms and
reports its threshold, not the measured block, and sees nothing under ~5 ms.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections import Counter

import gevent
from gevent.monkey import get_original

from probe import stats
from probe.frames import MAX_CULPRITS, culprit_line
from probe.model import Culprit, MonitorReport, SecondLag, StallEvent
from probe.sched import SchedStat

MAX_FRAME_LINES = 40
MAX_EVENTS = 2000  # stall events kept for the timeline (the counts stay exact beyond)
MAX_SECONDS = 3700

_start_thread = get_original("_thread", "start_new_thread")
_thread_sleep = get_original("time", "sleep")
_get_ident = get_original("_thread", "get_ident")


class LoopMonitor:
    def __init__(self, interval_s: float = 0.001, threshold_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.threshold_s = threshold_s
        self._hub_ident = _get_ident()
        self._beater: gevent.Greenlet | None = None
        self._running = False
        self._beat_at = time.perf_counter()  # when the heartbeat last asked to sleep
        self.reset()

    def start(self) -> LoopMonitor:
        self._running = True
        self._beat_at = time.perf_counter()
        self._beater = gevent.spawn(self._beat)
        _start_thread(self._watch, ())
        gevent.sleep(0)  # let the heartbeat take its first beat: a block right after counts
        return self

    def stop(self) -> None:
        self._running = False
        if self._beater is not None:
            self._beater.kill(block=False)
            self._beater = None

    def reset(self) -> None:
        """Forget what was seen so far (between a warm-up and the measurement)."""
        self.lag = stats.new_histogram()  # µs late, corrected for coordinated omission
        self.stalls = 0
        self.stalled_s = 0.0
        self.preempted_s = 0.0
        self.kinds: Counter[str] = Counter()
        self.max_s = 0.0
        self.events: list[StallEvent] = []
        self.seconds: dict[int, list[float]] = {}  # Unix second -> [max lag ms, stalled ms]
        self._culprits: Counter[str] = Counter()
        self._stacks: dict[str, tuple[str, ...]] = {}
        self._sampled_beat = -1.0  # the beat whose stall was sampled: once per stall
        self._sample: tuple[float, tuple[str, ...]] = (-1.0, ())  # (beat, stack) last sampled
        # The longest stall that was the process's doing (not preempted), and its stack.
        self.worst: tuple[float, tuple[str, ...]] = (0.0, ())
        self._worst_beat = -1.0
        self._since = time.perf_counter()

    # -- the heartbeat (a greenlet on the hub) --------------------------------------------------

    def _beat(self) -> None:
        interval = self.interval_s
        expected_us = max(1, int(interval * 1e6))
        sched = SchedStat()
        try:
            usage = sched.read_ns()
            while self._running:
                start = self._beat_at = time.perf_counter()
                gevent.sleep(interval)
                now = time.perf_counter()
                # A beat that began before a reset counts only for the part after it.
                late = min(now - start, now - self._since) - interval
                self.lag.record_corrected_value(max(0, int(late * 1e6)), expected_us)
                before, usage = usage, sched.read_ns()
                self.max_s = max(self.max_s, late)
                if late > self.threshold_s:
                    kind = stall_kind(now - start, before, usage)
                    self._stall(late, kind)
                    if late > self.worst[0] and kind != "preempted":
                        # The watchdog may still be formatting this stall's stack: whichever
                        # of the two finishes last attaches it (see _sample_hub).
                        self._worst_beat = start
                        beat, stack = self._sample
                        self.worst = (late, stack if beat == start else ())
                self._second(late, 0.0)
        finally:  # killed at stop(): GreenletExit lands here
            sched.close()

    def settle(self) -> None:
        """Let a heartbeat that is due run before a report: right after a stretch that blocked
        the hub, the last stall is only recorded once the heartbeat wakes."""
        gevent.sleep(self.interval_s * 3)

    def _stall(self, late: float, kind: str) -> None:
        self.kinds[kind] += 1
        if kind == "preempted":
            self.preempted_s += late
        else:
            self.stalls += 1
            self.stalled_s += late
            self._second(0.0, late)
        if len(self.events) < MAX_EVENTS:
            self.events.append(StallEvent(t=round(time.time() - late, 4),
                                          ms=round(late * 1000, 3), kind=kind))

    def _second(self, late: float, stalled: float) -> None:
        second = self.seconds.get(int(time.time()))
        if second is None and len(self.seconds) < MAX_SECONDS:
            second = self.seconds[int(time.time())] = [0.0, 0.0]
        if second is not None:
            second[0] = max(second[0], late * 1000)
            second[1] += stalled * 1000

    # -- the watchdog (a real OS thread) --------------------------------------------------------

    def _watch(self) -> None:
        # It keeps running while a C call holds the hub, as long as that call releases the GIL
        # (libpq waits do). It only reads the heartbeat's timestamp and writes its own fields.
        poll = min(self.threshold_s / 4, 0.0025)
        while self._running:
            _thread_sleep(poll)
            beat_at = self._beat_at
            overdue = time.perf_counter() - beat_at - self.interval_s
            if overdue > self.threshold_s and beat_at != self._sampled_beat:
                self._sampled_beat = beat_at
                self._sample_hub()

    def _sample_hub(self) -> None:
        frame = sys._current_frames().get(self._hub_ident)
        if frame is None:
            return
        stack = tuple("".join(traceback.format_stack(frame)).splitlines()[-MAX_FRAME_LINES:])
        beat = self._sampled_beat
        self._sample = (beat, stack)
        late, known = self.worst
        if beat == self._worst_beat and not known:
            self.worst = (late, stack)
        where = culprit_line(stack) or "?"
        self._culprits[where] += 1
        self._stacks.setdefault(where, stack)

    # -- the report ----------------------------------------------------------------------------

    def report(self) -> MonitorReport:
        culprits = tuple(Culprit(frame=f, count=n, stack=self._stacks.get(f, ()))
                         for f, n in self._culprits.most_common(MAX_CULPRITS))
        return MonitorReport(
            interval_ms=self.interval_s * 1000,
            threshold_ms=self.threshold_s * 1000,
            watched_s=round(time.perf_counter() - self._since, 6),
            lag_hdr=stats.encode(self.lag),
            stalls=self.stalls,
            stalled_ms=round(self.stalled_s * 1000, 3),
            max_ms=round(self.max_s * 1000, 3),
            kinds=dict(self.kinds),
            preempted_ms=round(self.preempted_s * 1000, 3),
            events=tuple(self.events),
            culprits=culprits,
            seconds=tuple(SecondLag(t=t, max_ms=round(v[0], 3), stalled_ms=round(v[1], 3))
                          for t, v in sorted(self.seconds.items())),
        )


def stall_kind(wall: float, before: tuple[int, int], after: tuple[int, int]) -> str:
    """busy, preempted or blocked: where the hub thread spent most of a late beat."""
    on_cpu = (after[0] - before[0]) / 1e9
    waiting_for_cpu = (after[1] - before[1]) / 1e9
    asleep = wall - on_cpu - waiting_for_cpu
    return max((on_cpu, "busy"), (waiting_for_cpu, "preempted"), (asleep, "blocked"))[1]
