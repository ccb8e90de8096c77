"""The slice tracer's hot path, in Python and in C: one meaning, two implementations."""

import os
import random
import select
import threading
import time

import pytest

from probe import _switch_clock  # built by every install of the checkout (pip, uv, CI)
from probe.alarm import ClockAlarm, new_alarm
from probe.switch_clock import (
    IMPLEMENTATION,
    NEVER,
    PySwitchClock,
    bucket_of,
    bucket_range,
    new_clock,
)

HUB, GREENLET = object(), object()
MS = 1_000_000


@pytest.fixture(params=["C", "Python"])
def make_clock(request):
    def make(slow=lambda *args: None, large=lambda us: None):
        return new_clock(HUB, slow, large, compiled=request.param == "C")
    return make


def switch(clock, wall_ns: int, origin=GREENLET) -> None:
    """What greenlet calls at a switch that ends a slice of at least `wall_ns`."""
    clock.start_ns = time.perf_counter_ns() - wall_ns
    clock.entry("switch", (origin, HUB))


def test_the_compiled_clock_is_what_runs_here():
    assert IMPLEMENTATION == "C"
    assert type(new_clock(HUB, print, print)).__module__ == "probe._switch_clock"
    assert isinstance(new_clock(HUB, print, print, compiled=False), PySwitchClock)


def test_buckets_hold_their_values_and_are_narrow():
    for wall in [0, 1, 1023, 1024, (1 << 20) - 1, 1 << 20, 5 * MS, 16_777_216, 10**9,
                 (1 << 40) - 1, *(random.randrange(1, 1 << 40) for _ in range(5000))]:
        lower, width = bucket_range(bucket_of(wall))
        assert lower <= wall < lower + width
        assert width == 1024 or width <= lower / 512  # 0.2% from ~1 ms on


def test_a_slice_is_counted_in_its_bucket_and_busy_time_unless_the_hub_ran(make_clock):
    clock = make_clock()
    clock.next_read = NEVER
    for wall in (3_000, 700_000, 5 * MS, 40 * MS):
        before = clock.busy_ns
        switch(clock, wall)
        assert wall <= clock.busy_ns - before < wall + 5 * MS
    switch(clock, 30 * MS, origin=HUB)  # the hub's own run: neither busy nor counted
    assert clock.counted() == 4
    buckets = clock.buckets()
    assert [n for *_, n in buckets] == [1, 1, 1, 1]
    for (lower, width, _), wall in zip(buckets, (3_000, 700_000, 5 * MS, 40 * MS),
                                       strict=True):
        assert lower + width > wall and lower < wall + 5 * MS
    clock.clear()
    assert clock.counted() == 0 and clock.busy_ns == 0 and clock.buckets() == []


def test_the_slow_path_runs_when_due_and_after_every_slice_past_the_threshold(make_clock):
    calls: list = []
    clock = make_clock(slow=lambda *args: calls.append(args))
    clock.next_read, clock.threshold_ns = NEVER, 10 * MS
    switch(clock, 2 * MS)
    assert calls == []
    switch(clock, 12 * MS)  # held: classified at its end, due or not
    ((pair, started, now, wall),) = calls
    assert pair == (GREENLET, HUB) and now - started == wall >= 12 * MS
    clock.next_read = 0  # due
    switch(clock, 1_000)
    assert len(calls) == 2


def test_a_slice_past_the_buckets_goes_to_large_and_the_previous_tracer_still_runs(make_clock):
    large: list[int] = []
    clock = make_clock(large=large.append)
    clock.next_read = NEVER
    seen: list = []
    clock.previous = lambda event, args: seen.append(event)
    switch(clock, (1 << 40) + MS)
    assert len(large) == 1 and large[0] >= (1 << 40) // 1000 and seen == ["switch"]


def test_an_error_in_the_slow_path_reaches_the_switch(make_clock):
    def fail(*args):
        raise ValueError("slow path")

    clock = make_clock(slow=fail)
    clock.next_read = 0
    with pytest.raises(ValueError, match="slow path"):
        switch(clock, 1_000)


# -- the compiled clock's watch: a native thread, no GIL --------------------------------------

def fired(fd: int, within_s: float) -> bool:
    ready, _, _ = select.select([fd], [], [], within_s)
    if ready:
        os.read(fd, 8)
    return bool(ready)


def test_the_watch_fires_once_a_slice_runs_long_and_not_while_slices_switch():
    clock = _switch_clock.SwitchClock(HUB, lambda *a: None, lambda us: None)
    clock.next_read = NEVER
    fd = os.eventfd(0, os.EFD_CLOEXEC)
    clock.watch(fd, 20 * MS)
    try:
        end = time.monotonic() + 0.15
        while time.monotonic() < end:  # slices of 1 ms: never 20 ms old
            clock.start_ns = time.perf_counter_ns()
            time.sleep(0.001)
        assert not fired(fd, 0)
        clock.start_ns = time.perf_counter_ns()  # this one runs on
        t0 = time.perf_counter()
        assert fired(fd, 1.0)
        assert 0.015 <= time.perf_counter() - t0 < 0.5
        assert not fired(fd, 0.06)  # once per slice...
        clock.arm(10 * MS)  # ...and at a deadline
        assert fired(fd, 1.0)
    finally:
        clock.unwatch()
        os.close(fd)


def test_the_watch_reads_the_hub_threads_clocks_before_a_slice_began():
    clock = _switch_clock.SwitchClock(HUB, lambda *a: None, lambda us: None)
    fd = os.eventfd(0, os.EFD_CLOEXEC)
    clock.watch(fd, 5 * MS)  # from this thread: its clocks are read
    try:
        clock.start_ns = time.perf_counter_ns()
        time.sleep(0.03)
        assert clock.snapshot_before(0) is not None
        began = time.perf_counter_ns()
        end = time.thread_time() + 0.02
        while time.thread_time() < end:  # 20 ms on the CPU, switching every 1 ms
            clock.start_ns = time.perf_counter_ns()
            spin = time.perf_counter() + 0.001
            while time.perf_counter() < spin:
                pass
        at0, cpu0, _ = clock.snapshot_before(began)
        at1, cpu1, _ = clock.snapshot_before(0)
        assert at0 <= began < at1
        assert cpu1 - cpu0 >= 10 * MS  # the thread's CPU time, read from the other thread
        assert clock.snapshot_before(1) is None  # none that old
    finally:
        clock.unwatch()
        os.close(fd)


def test_clock_alarm_waits_for_its_clock_and_closes_cleanly():
    assert not isinstance(new_alarm(PySwitchClock(HUB, print, print), 0.005), ClockAlarm)
    before = len(os.listdir("/proc/self/fd"))
    clock = _switch_clock.SwitchClock(HUB, lambda *a: None, lambda us: None)
    alarm = new_alarm(clock, poll_s=0.005)
    assert isinstance(alarm, ClockAlarm) and alarm.follows_clock
    alarm.follow(0.01)
    woke: list[float] = []
    t0 = time.perf_counter()
    clock.start_ns = time.perf_counter_ns()
    waiter = threading.Thread(target=lambda: woke.append(alarm.wait() and time.perf_counter()))
    waiter.start()
    waiter.join(2)
    assert woke and woke[0] - t0 >= 0.009
    alarm.wake()
    assert alarm.wait()
    alarm.close()
    assert not alarm.wait()
    alarm.wake()  # closed: nothing to wake, no error
    assert len(os.listdir("/proc/self/fd")) <= before
