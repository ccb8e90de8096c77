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
"""

from __future__ import annotations

import contextlib
import os

from gevent.monkey import get_original

from probe.syscalls import Timer

_thread_sleep = get_original("time", "sleep")


class Alarm:
    """arm(after) from any thread; wait() in the watchdog thread."""

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

    def wake(self) -> None:
        """Make a blocked wait() return now (to let the watchdog see that it must stop)."""
        self.arm(1e-6)

    def close(self) -> None:
        """From the thread that waits, once it is done waiting."""
        timer, self._timer = self._timer, None
        if timer is not None:
            os.close(timer.fd)
