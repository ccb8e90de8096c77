"""Where a thread's time went, from the kernel's scheduler accounting (Linux).

/proc/thread-self/schedstat gives, per thread and in nanoseconds, the time it was runnable but
waiting for a CPU (another process had the core); the thread's CPU clock gives the time it ran
(schedstat's own CPU field is only brought up to date at scheduler ticks, up to 4 ms late for
a running thread, so we don't use it). Wall time minus both is the time it slept in a
blocking call. That split is what lets the probe tell a driver
that blocks the hub (asleep while holding it) from a busy machine (waiting for a core), so a
noisy machine cannot fake a verdict. Reading it costs ~1 µs; elsewhere than Linux only the
CPU time is known and nothing counts as waiting.

A virtual machine adds a third place: time its host gave the CPU to someone else ("steal").
The guest sees its thread neither on a CPU nor waiting for one, so that time reads as sleep,
and a cooperative worker on a busy host showed runs "asleep" for 15-20 ms (the hub idle in
its poll, its wake-up timer late by the host's stall). Only /proc/stat counts it, per CPU and
in ticks (10 ms): `Steal` reads it, and the slice tracer moves what was stolen during a held
run from asleep to waiting for a CPU.
"""

from __future__ import annotations

import os
import time

from probe.measurement import HeldKind
from probe.syscalls import Reader, close, open_or_none

PATH = "/proc/thread-self/schedstat"
MISSING = ("time waiting for a CPU: no /proc/thread-self/schedstat here, so a thread that "
           "waited for a CPU other processes had counts as blocked, and no run is called "
           "preempted (a busy machine can overstate blocking)")


def runq_ns(schedstat: Reader) -> int:
    """A schedstat file's time runnable waiting for a CPU: its second field."""
    return int(schedstat.read().split()[1])


class SchedStat:
    """Open it in the thread to watch: the file is bound to the thread that opens it."""

    def __init__(self) -> None:
        self._reader = open_or_none(PATH, 128)
        self._readable = self._reader is not None  # still true once closed: the report follows

    @property
    def knows_runq(self) -> bool:
        """False where the time waiting for a CPU cannot be read (it reads as 0)."""
        return self._readable

    def read_ns(self) -> tuple[int, int]:
        """(ns on a CPU, ns runnable waiting for a CPU) since the thread started."""
        if self._reader is not None:
            return time.thread_time_ns(), runq_ns(self._reader)
        return time.thread_time_ns(), 0

    def close(self) -> None:
        self._reader, reader = None, self._reader
        close(reader)


STAT_PATH = "/proc/stat"
STEAL_COLUMN = 8  # "cpuN user nice system idle iowait irq softirq steal guest guest_nice"
THREAD_STAT = "/proc/thread-self/stat"
CPU_FIELD = 36  # "processor" (the CPU it last ran on), counted from the field after ")"


class Steal:
    """Per-CPU time the VM's host took from this machine (/proc/stat). Open it in the thread
    to watch, like SchedStat: `between_ns` counts what the CPU that thread runs on lost.

    Reading it costs ~13 µs (the kernel formats the whole file), so callers read it at most
    once a tick. Not the machine's worst CPU: an idle CPU of this VM lost ~2% to its host
    too, which a thread asleep elsewhere never saw. Inactive where nothing was ever stolen
    since boot (bare metal, or a host that does not report it)."""

    def __init__(self, path: str = STAT_PATH, thread_stat: str = THREAD_STAT) -> None:
        self._tick_ns = 0
        self._stat = open_or_none(path, 1 << 16)
        self._thread: Reader | None = None
        try:
            self._tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
            if any(self.read()):
                self._thread = open_or_none(thread_stat, 1024)
                return
        except (OSError, ValueError, IndexError, AttributeError):  # not Unix, another format
            pass
        self.close()

    @property
    def active(self) -> bool:
        return self._stat is not None

    def read(self) -> tuple[int, ...]:
        """Ticks stolen from each CPU since boot; () when inactive."""
        if self._stat is None:
            return ()
        lines = self._stat.read().split(b"\n")
        return tuple(int(line.split()[STEAL_COLUMN]) for line in lines[1:]
                     if line.startswith(b"cpu"))

    def cpu(self) -> int | None:
        """The CPU the watched thread runs on (None if unknown)."""
        if self._thread is None:
            return None
        try:
            return int(self._thread.read().rsplit(b")", 1)[1].split()[CPU_FIELD])
        except (OSError, ValueError, IndexError):
            return None

    def between_ns(self, before: tuple[int, ...], after: tuple[int, ...]) -> int:
        """What the watched thread's CPU lost between two reads: if that CPU is unknown, the
        most any one lost (a thread runs on one CPU at a time)."""
        if not after or len(after) != len(before):  # inactive, or a CPU came or went
            return 0
        lost = [a - b for a, b in zip(after, before, strict=True)]
        cpu = self.cpu()
        return (lost[cpu] if cpu is not None and cpu < len(lost) else max(lost)) * self._tick_ns

    def close(self) -> None:
        (stat, self._stat), (thread, self._thread) = (self._stat, None), (self._thread, None)
        close(stat)
        close(thread)


class RunQueue:
    """Another thread's time waiting for a CPU (its schedstat), for the watchdog to tell a hub
    that was preempted from one that held the loop. The kernel adds a wait when it ends: read
    from a thread that took the GIL from the hub, it counts the one that just ended."""

    def __init__(self, native_id: int) -> None:
        self._reader = open_or_none(f"/proc/self/task/{native_id}/schedstat", 128)

    def read_ns(self) -> int | None:
        if self._reader is None:
            return None
        try:
            return runq_ns(self._reader)
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        self._reader, reader = None, self._reader
        close(reader)


class Wchan:
    """Where in the kernel a thread of this process sleeps ("do_epoll_wait",
    "hrtimer_nanosleep"; "0" while it runs), or "" where that cannot be read. Read by the
    watchdog around every sample: the file stays open (probe.syscalls)."""

    def __init__(self, native_id: int) -> None:
        self._reader = open_or_none(f"/proc/self/task/{native_id}/wchan", 64)

    def read(self) -> str:
        if self._reader is None:
            return ""
        try:
            return self._reader.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self._reader, reader = None, self._reader
        close(reader)


def held_kind(on_cpu: int, runq: int, asleep: int) -> HeldKind:
    """Where a held slice went. Waiting for a CPU most of it is the machine's doing; asleep a
    third of the rest or more is blocking, even beside CPU work (a driver that waits in C
    between bursts of work, as psycopg2 running queries back to back does); the rest is
    computing."""
    if runq > max(on_cpu, asleep):
        return "preempted"
    return "blocked" if 2 * asleep >= on_cpu else "computing"
