"""The slice tracer's hot path: what runs at every greenlet switch (probe.slices).

Two implementations of one object, with the same fields and meaning: `PySwitchClock` below,
the reference, and probe/_switch_clock.c, the same in C, which the wheel ships compiled and
`pip install` builds from the sdist where a C compiler exists. Why two: greenlet calls the
tracer at every switch, tens of thousands of times a second in a saturated worker: 673 ns a
switch in Python, 243 in C, in a tight loop (benchmarks/switch_cost.py). With the C clock's
watch thread (probe.alarm.ClockAlarm), the whole watch cost the sample app 2.1% less CPU per
request than before, side by side (benchmarks/overhead.py --against). Without a compiler the
tool still works, at that cost (`IMPLEMENTATION` says which one runs; the results record
it).

A switch: the wall clock, the slice's length added to the busy time (unless the hub's own run
ended) and counted in a bucket (shifts, not divisions): 1.024 µs wide up to 2^20 ns (~1 ms),
then 512 per power of two (0.2% wide) up to 2^40 ns (~18 min); `large` (an HdrHistogram's)
gets longer ones. Why buckets so far: saturated workers that share a core run many slices of
several ms (the kernel gives the core to another process mid-slice), and recording each in
an HdrHistogram, in Python, was ~1% of such a worker's samples (py-spy).
`slow` is called when the time is past `next_read`, which the slow path sets, and at the end
of every slice of `threshold_ns` or more (a held one: the slow path classifies it).

The C clock also watches the hub from a native thread (probe.alarm's ClockAlarm) and reads the
hub thread's clocks there, so that the slow path, and its system calls, can run rarely.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

LINEAR_SHIFT = 10  # 1.024 µs buckets...
LOG_FROM, LOG_TO = 20, 40  # ...up to 2^20 ns, then by powers of two up to 2^40 ns...
SUB_BITS = 9  # ...each split in 512
LINEAR_NS, LOG_TO_NS = 1 << LOG_FROM, 1 << LOG_TO
LINEAR_BUCKETS = 1 << (LOG_FROM - LINEAR_SHIFT)
BUCKETS = LINEAR_BUCKETS + ((LOG_TO - LOG_FROM) << SUB_BITS)
NEVER = (1 << 63) - 1


def bucket_of(wall: int) -> int:
    if wall < LINEAR_NS:
        return max(0, wall) >> LINEAR_SHIFT
    e = wall.bit_length() - 1  # 2^e <= wall < 2^(e+1)
    return (LINEAR_BUCKETS + ((e - LOG_FROM) << SUB_BITS)
            + ((wall >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1)))


def bucket_range(i: int) -> tuple[int, int]:
    """(lower ns, width ns) of bucket i."""
    if i < LINEAR_BUCKETS:
        return i << LINEAR_SHIFT, 1 << LINEAR_SHIFT
    e = LOG_FROM + ((i - LINEAR_BUCKETS) >> SUB_BITS)
    width = 1 << (e - SUB_BITS)
    return (1 << e) + ((i - LINEAR_BUCKETS) & ((1 << SUB_BITS) - 1)) * width, width


SlowPath = Callable[[Any, int, int, int], object]  # ((origin, target), started, now, wall)

_perf_ns = time.perf_counter_ns


class SwitchClock(Protocol):
    start_ns: int  # when the current slice began: its name
    busy_ns: int  # greenlets' slices, not the hub's own runs
    next_read: int  # when the slow path is next due
    threshold_ns: int  # and at the end of every slice this long
    large: Callable[[int], object]  # a slice of LOG_TO_NS or more, in µs
    previous: Callable[[str, Any], Any] | None  # the tracer installed before this one

    @property
    def entry(self) -> Callable[[str, Any], Any]:
        """What greenlet.settrace is given."""

    def buckets(self) -> list[tuple[int, int, int]]:
        """[(lower ns, width ns, slices)] of the buckets that counted one."""

    def counted(self) -> int:
        """Slices counted in buckets."""

    def clear(self) -> None:
        """Forget the buckets and the busy time."""


class PySwitchClock:
    """The reference implementation, and the fallback where the C one was not built."""

    def __init__(self, hub: object, slow: SlowPath, large: Callable[[int], object]) -> None:
        self.hub = hub
        self._slow = slow
        self.large = large
        self.previous: Callable[[str, Any], Any] | None = None
        self.start_ns = self.next_read = _perf_ns()
        self.threshold_ns = NEVER
        self.busy_ns = 0
        self._counts = [0] * BUCKETS
        self.entry = self.trace

    def trace(self, event: str, args: Any) -> None:
        # As few attribute reads as can be: each is ~15 ns of the ~0.5 µs this costs.
        now = _perf_ns()
        started = self.start_ns
        wall = now - started
        if args[0] is not self.hub:
            self.busy_ns += wall
            if wall < LINEAR_NS:
                self._counts[wall >> LINEAR_SHIFT] += 1
            elif wall < LOG_TO_NS:
                self._counts[bucket_of(wall)] += 1
            else:
                self.large(wall // 1000)
        if now >= self.next_read or wall >= self.threshold_ns:
            self._slow(args, started, now, wall)
        self.start_ns = now
        if self.previous is not None:
            self.previous(event, args)

    def buckets(self) -> list[tuple[int, int, int]]:
        return [(*bucket_range(i), n) for i, n in enumerate(self._counts) if n]

    def counted(self) -> int:
        return sum(self._counts)

    def clear(self) -> None:
        self._counts = [0] * BUCKETS
        self.busy_ns = 0


def _compiled() -> type | None:
    try:
        from probe import _switch_clock  # type: ignore[attr-defined]
    except ImportError:
        return None
    if ((_switch_clock.LINEAR_SHIFT, _switch_clock.LOG_FROM, _switch_clock.LOG_TO,
         _switch_clock.SUB_BITS) != (LINEAR_SHIFT, LOG_FROM, LOG_TO, SUB_BITS)):
        return None  # a stale build: its buckets would not mean ours
    return _switch_clock.SwitchClock  # type: ignore[no-any-return]


_COMPILED = _compiled()
IMPLEMENTATION = "C" if _COMPILED is not None else "Python"


def new_clock(hub: object, slow: SlowPath, large: Callable[[int], object],
              compiled: bool = True) -> SwitchClock:
    """The C clock where it was built (unless `compiled` is False), else the Python one."""
    if compiled and _COMPILED is not None:
        return _COMPILED(hub, slow, large)  # type: ignore[no-any-return]
    return PySwitchClock(hub, slow, large)
