"""Where a thread's time went, from the kernel's scheduler accounting (Linux).

/proc/thread-self/schedstat gives, per thread and in nanoseconds, the time it was runnable but
waiting for a CPU (another process had the core); the thread's CPU clock gives the time it ran
(schedstat's own CPU field is only brought up to date at scheduler ticks, up to 4 ms late for
a running thread, so we don't use it). Wall time minus both is the time it slept in a
blocking call. That split is what lets the probe tell a driver
that blocks the hub (asleep while holding it) from a busy machine (waiting for a core), so a
noisy machine cannot fake a verdict. Reading it costs ~1 µs; elsewhere than Linux only the
CPU time is known and nothing counts as waiting.
"""

from __future__ import annotations

import os
import time

from probe.measurement import HeldKind

PATH = "/proc/thread-self/schedstat"
MISSING = ("time waiting for a CPU: no /proc/thread-self/schedstat here, so a thread that "
           "waited for a CPU other processes had counts as blocked, and no run is called "
           "preempted (a busy machine can overstate blocking)")


class SchedStat:
    """Open it in the thread to watch: the file is bound to the thread that opens it."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open(PATH, os.O_RDONLY)
        except OSError:  # not Linux (macOS), or a container's restricted /proc
            self._fd = None
        self._readable = self._fd is not None  # still true once closed: the report follows

    @property
    def knows_runq(self) -> bool:
        """False where the time waiting for a CPU cannot be read (it reads as 0)."""
        return self._readable

    def read_ns(self) -> tuple[int, int]:
        """(ns on a CPU, ns runnable waiting for a CPU) since the thread started."""
        if self._fd is not None:
            return time.thread_time_ns(), int(os.pread(self._fd, 128, 0).split()[1])
        return time.thread_time_ns(), 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def wchan(native_id: int) -> str:
    """Where in the kernel a thread of this process sleeps ("do_epoll_wait",
    "hrtimer_nanosleep"; "0" while it runs), or "" where that cannot be read."""
    try:
        with open(f"/proc/self/task/{native_id}/wchan") as f:
            return f.read()
    except OSError:
        return ""


def held_kind(on_cpu: int, runq: int, asleep: int) -> HeldKind:
    """Where a held slice went. Waiting for a CPU most of it is the machine's doing; asleep a
    third of the rest or more is blocking, even beside CPU work (a driver that waits in C
    between bursts of work, as psycopg2 running queries back to back does); the rest is
    computing."""
    if runq > max(on_cpu, asleep):
        return "preempted"
    return "blocked" if 2 * asleep >= on_cpu else "computing"
