"""Loop-lag heartbeat and a blocked-hub watchdog, for processes that run gevent.

Imported only after gevent has patched the process (bench worker, sample app).

Two views of the same problem, because each misses what the other sees:
- the heartbeat greenlet asks to wake every `interval` and records how late it woke, so it
  *measures* every stall of the hub, down to fractions of a millisecond;
- the watchdog, a real OS thread, notices when the heartbeat has not run for `threshold`
  and samples the hub thread's stack at that moment: the frames that hold the hub, which
  is the evidence a reader needs to find the culprit.

The watchdog is the technique of gevent's own monitor thread (gevent/_monitor.py), driven by
our heartbeat instead of a greenlet-switch tracer: the stall it reports is measured, not
just "longer than the threshold", and it costs no tracing on every greenlet switch.
"""

from __future__ import annotations

import sys
import time
import traceback

import gevent
from gevent.monkey import get_original

from probe import stats

MAX_FRAME_LINES = 40

_start_thread = get_original("_thread", "start_new_thread")
_thread_sleep = get_original("time", "sleep")
_get_ident = get_original("_thread", "get_ident")


class LoopMonitor:
    def __init__(self, interval_s: float = 0.001, threshold_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.threshold_s = threshold_s
        self.lag = stats.new_histogram()  # microseconds late
        self.events = 0  # stalls longer than threshold_s
        self.first_frames: tuple[str, ...] = ()
        self._lock = _RealLock()
        self._last_beat = time.perf_counter()
        self._beats = 0
        self._hub_ident = _get_ident()
        self._beater: gevent.Greenlet | None = None
        self._running = False

    def start(self) -> None:
        self._running = True
        self._last_beat = time.perf_counter()
        self._beater = gevent.spawn(self._beat)
        _start_thread(self._watch, ())

    def stop(self) -> None:
        self._running = False
        if self._beater is not None:
            self._beater.join(timeout=1)
            self._beater.kill(block=False)

    def reset(self) -> None:
        """Forget what was seen so far (used between a warm-up and the measurement)."""
        with self._lock:
            self.lag.reset()
            self.events = 0
            self.first_frames = ()

    def _beat(self) -> None:
        interval = self.interval_s
        while self._running:
            start = time.perf_counter()
            gevent.sleep(interval)
            now = time.perf_counter()
            late_us = (now - start - interval) * 1e6
            with self._lock:
                self._last_beat = now
                self._beats += 1
                self.lag.record_value(max(0, int(late_us)))

    def _watch(self) -> None:
        # Runs in a real OS thread: it keeps running while a C call holds the hub, as long as
        # that call releases the GIL (libpq waits do). One event per stall, counted when the
        # stall first crosses the threshold.
        seen_beats = -1
        while self._running:
            _thread_sleep(self.threshold_s / 2)
            with self._lock:
                stalled = time.perf_counter() - self._last_beat > self.threshold_s
                beats = self._beats
            if stalled and beats != seen_beats:
                seen_beats = beats
                self._record_stall()

    def _record_stall(self) -> None:
        frame = sys._current_frames().get(self._hub_ident)
        with self._lock:
            self.events += 1
            if not self.first_frames and frame is not None:
                lines = "".join(traceback.format_stack(frame)).splitlines()
                self.first_frames = tuple(lines[-MAX_FRAME_LINES:])


class _RealLock:
    """A lock shared by a greenlet and a real thread: the unpatched one, taken briefly."""

    def __init__(self) -> None:
        self._lock = get_original("_thread", "allocate_lock")()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
