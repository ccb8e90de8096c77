"""A kernel timer the hub keeps pushing back, so that the watchdog thread sleeps until the hub
has been held for a while, instead of waking every few milliseconds to look.

Why: a Python thread needs the GIL to run even one line. A watchdog that polls every 5 ms
takes the GIL from a busy hub 200 times a second, and those hand-overs cost the measured app
about 7% of its throughput here (benchmarks/overhead.py). A timerfd (Linux) fires only when
nobody re-armed it in time: the slice tracer re-arms it at most once a millisecond while the
hub switches greenlets, so it fires only while one slice runs long, which is exactly when the
watchdog has a stack to sample. Re-arming is one system call (~1-2 µs) that never waits for
the watchdog, which is blocked in read() with the GIL released.

Where there is no timerfd (macOS, or a libc without it), `Alarm` polls instead: the watchdog
wakes every period, as before, and the results say so (probe.capabilities).

os.timerfd_* exist from Python 3.13; before that the same system calls go through ctypes.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from typing import Any

from gevent.monkey import get_original

_thread_sleep = get_original("time", "sleep")

CLOCK_MONOTONIC = 1
TFD_CLOEXEC = 0o2000000


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class Alarm:
    """arm(after, repeat) from any thread; wait() in the watchdog thread."""

    def __init__(self, poll_s: float) -> None:
        self.poll_s = poll_s
        self._fd: int | None = None
        self._settime: Any = None
        if sys.platform.startswith("linux"):
            self._open()

    @property
    def kernel(self) -> bool:
        """True when a kernel timer drives the watchdog; False when it polls."""
        return self._fd is not None

    def _open(self) -> None:
        try:
            if hasattr(os, "timerfd_create"):
                self._fd = os.timerfd_create(time.CLOCK_MONOTONIC, flags=os.TFD_CLOEXEC)  # type: ignore[attr-defined]
                self._settime = self._settime_os
                return
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC)
            if fd < 0:
                return
            self._libc_settime = libc.timerfd_settime
            self._spec = _Itimerspec()  # reused: arm() runs up to a thousand times a second
            self._spec_ref = ctypes.byref(self._spec)
            self._fd = fd
            self._settime = self._settime_libc
        except (OSError, AttributeError):
            self._fd = None

    def _settime_os(self, after: float, repeat: float) -> None:
        assert self._fd is not None
        os.timerfd_settime(self._fd, initial=after, interval=repeat)  # type: ignore[attr-defined]

    def _settime_libc(self, after: float, repeat: float) -> None:
        spec = self._spec
        spec.it_value.tv_sec, spec.it_value.tv_nsec = int(after), int(after % 1 * 1e9)
        spec.it_interval.tv_sec, spec.it_interval.tv_nsec = int(repeat), int(repeat % 1 * 1e9)
        self._libc_settime(self._fd, 0, self._spec_ref, None)

    def arm(self, after: float, repeat: float = 0.0) -> None:
        """Fire `after` seconds from now (then every `repeat`), unless re-armed before."""
        if self._fd is not None:
            self._settime(after, repeat)

    def wait(self) -> bool:
        """Block until the alarm fires (or a poll period passed); False once closed."""
        fd = self._fd
        if fd is None:
            _thread_sleep(self.poll_s)
            return True
        try:
            os.read(fd, 8)  # blocks without the GIL; 8 bytes: the expirations count
        except OSError:
            return False
        return True

    def wake(self) -> None:
        """Make a blocked wait() return now (to let the watchdog see that it must stop)."""
        self.arm(1e-6)

    def close(self) -> None:
        """From the thread that waits, once it is done waiting."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
