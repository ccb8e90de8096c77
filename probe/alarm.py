"""A kernel timer the hub keeps pushing back, so that the watchdog thread sleeps until the hub
has been held for a while, instead of waking every few milliseconds to look.

Why: a Python thread needs the GIL to run even one line. A watchdog that polls every 5 ms
takes the GIL from a busy hub 200 times a second, and those hand-overs cost the measured app
about 7% of its throughput here (benchmarks/overhead.py). A timerfd (Linux) fires only when
nobody re-armed it in time: the slice tracer re-arms it at most once per refresh period while
the hub switches greenlets, so it fires only while one slice runs long, which is exactly when
the watchdog has a stack to sample. Re-arming is one system call (~1-2 µs) that never waits
for the watchdog, which is blocked in read() with the GIL released, and it keeps the GIL
(probe.syscalls): handing it over there would let the watchdog take it mid-slice.

Where there is no timerfd (macOS, or a libc without it), `Alarm` polls instead: the watchdog
wakes every period, as before, and the results say so (probe.capabilities).

Where the slice tracer's hot path is compiled (probe.switch_clock), `ClockAlarm` replaces the
timer: a native thread of that clock, which never needs the GIL, reads when the current slice
began and fires once it has run long enough. The hub then makes no system call at all for the
watchdog. The timer's watchdog, re-armed 400 times a second, cost a saturated sample app
~1.7% of its CPU per request (benchmarks/overhead.py --against, the watchdog left out
beside).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from gevent.monkey import get_original

from probe.syscalls import Timer

_thread_sleep = get_original("time", "sleep")


class Alarm:
    """arm(after) from any thread; wait() in the watchdog thread."""

    follows_clock = False  # the tracer pushes it back at every slow path

    def __init__(self, poll_s: float) -> None:
        self.poll_s = poll_s
        self._timer: Timer | None = None
        with contextlib.suppress(OSError):  # no timerfd here: poll
            self._timer = Timer()

    @property
    def kernel(self) -> bool:
        """True when a kernel timer drives the watchdog; False when it polls."""
        return self._timer is not None

    def arm(self, after: float) -> None:
        """Fire `after` seconds from now, unless re-armed before."""
        if self._timer is not None:
            self._timer.settime(after)

    def wait(self) -> bool:
        """Block until the alarm fires (or a poll period passed); False once closed."""
        timer = self._timer
        if timer is None:
            _thread_sleep(self.poll_s)
            return True
        try:
            os.read(timer.fd, 8)  # blocks without the GIL; 8 bytes: the expirations count
        except OSError:
            return False
        return True

    def follow(self, after_s: float) -> None:
        """ClockAlarm's; this one is pushed back by the tracer instead."""

    def wake(self) -> None:
        """Make a blocked wait() return now (to let the watchdog see that it must stop)."""
        self.arm(1e-6)

    def close(self) -> None:
        """From the thread that waits, once it is done waiting."""
        timer, self._timer = self._timer, None
        if timer is not None:
            os.close(timer.fd)


class ClockAlarm:
    """Alarm's interface on a compiled switch clock's watch (probe/_switch_clock.c): fires once
    the current slice has run `follow`'s time, and at arm()'s deadlines."""

    follows_clock = True
    kernel = True  # woken by the clock's thread, not by polling

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._fd: int | None = os.eventfd(0, os.EFD_CLOEXEC)
        self._watching = False

    def follow(self, after_s: float) -> None:
        """Fire once a slice has run `after_s` (the first call starts the clock's thread)."""
        after_ns = max(1, int(after_s * 1e9))
        if self._fd is None:
            return
        if self._watching:
            self._clock.after_ns = after_ns
        else:
            self._clock.watch(self._fd, after_ns)
            self._watching = True

    def arm(self, after: float) -> None:
        """Fire `after` seconds from now too (once; a later call replaces it)."""
        self._clock.arm(max(1, int(after * 1e9)))

    def wait(self) -> bool:
        fd = self._fd
        if fd is None:
            return False
        try:
            os.read(fd, 8)  # blocks without the GIL; 8 bytes: how many firings
        except OSError:
            return False
        return True

    def wake(self) -> None:
        fd = self._fd
        if fd is not None:
            with contextlib.suppress(OSError):
                os.eventfd_write(fd, 1)

    def close(self) -> None:
        """From the thread that waits: the clock's thread stops (joined) before the fd closes."""
        fd, self._fd = self._fd, None
        if self._watching:
            self._clock.unwatch()
            self._watching = False
        if fd is not None:
            os.close(fd)


def new_alarm(clock: Any, poll_s: float) -> Alarm | ClockAlarm:
    """The clock's own watch where it has one (compiled), else the kernel timer (or polling)."""
    if hasattr(clock, "watch") and hasattr(os, "eventfd"):
        return ClockAlarm(clock)
    return Alarm(poll_s)
