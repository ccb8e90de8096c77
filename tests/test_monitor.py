"""The slice tracer, the heartbeat and the watchdog on a real gevent hub."""

import os
import time

import gevent
import pytest
from gevent.lock import Semaphore

from probe import contention, stats
from probe.monitor import LoopMonitor, stall_kind
from probe.slices import SliceTracer

blocking_sleep = time.sleep  # this test process is not monkey-patched: it really blocks


@pytest.fixture(params=[True, False], ids=["C", "Python"])
def compiled(request):
    """Both hot paths (probe.switch_clock): the C one with its watch thread, the Python one
    with the kernel timer."""
    return request.param


@pytest.fixture
def monitor(compiled):
    m = LoopMonitor(interval_s=0.001, threshold_s=0.01, compiled=compiled).start()
    gevent.sleep(0.02)
    m.reset()
    yield m
    m.stop()


def test_a_blocking_call_is_one_blocked_slice_measured_with_its_frame(monitor):
    blocking_sleep(0.1)  # the hub cannot run while this holds it
    monitor.settle()
    report = monitor.report()
    slices = report.slices
    # On a loaded machine the hub's other runs may wait for a CPU that long: preempted, and
    # only that.
    assert slices.held["blocked"] == 1 and 95 <= slices.held_ms["blocked"] <= 200
    assert set(slices.held) <= {"blocked", "preempted"}
    (held,) = [h for h in slices.longest if h.kind == "blocked"]
    # (A VM's CPUs lose time to their host even idle: a tick of it may be taken off.)
    assert held.kind == "blocked" and held.off_cpu_ms >= 70 and held.on_cpu_ms < 10
    assert held.off_cpu_ms + held.runq_ms >= 90
    assert any("blocking_sleep(0.1)" in frame for frame in held.frames)
    assert "blocking_sleep(0.1)" in slices.culprits[0].frame
    # The heartbeat saw one stall, and knows the slice that held it.
    assert report.stalls == 1 and report.kinds["blocked"] == 1
    assert set(report.kinds) <= {"blocked", "preempted"}
    assert 95 <= report.max_ms <= 200
    # Corrected for coordinated omission: the stall stands for the beats it prevented.
    lag = stats.lag_summary(stats.decode(report.lag_hdr))
    assert lag.samples >= 0.09 / monitor.interval_s and lag.p50 >= 40


def test_code_that_computes_without_yielding_is_a_computing_slice(monitor):
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass
    monitor.settle()
    report = monitor.report()
    held = report.slices.longest[0]
    assert held.ms >= 50
    # Never asleep: it ran, or (a loaded machine) waited for a CPU, which when longer than
    # it ran makes it preempted.
    assert held.off_cpu_ms < 10 and held.on_cpu_ms + held.runq_ms >= 40
    assert held.kind == ("preempted" if held.runq_ms > held.on_cpu_ms else "computing")
    assert "blocked" not in report.slices.held and "blocked" not in report.kinds


def test_a_saturated_hub_is_queueing_not_a_held_slice(monitor):
    # 40 greenlets each compute 1 ms and yield, over and over: the heartbeat waits ~40 ms
    # behind them every time, though no greenlet ever holds the hub for long.
    def worker() -> None:
        for _ in range(8):
            end = time.perf_counter() + 0.001
            while time.perf_counter() < end:
                pass
            gevent.sleep(0)

    gevent.joinall([gevent.spawn(worker) for _ in range(40)])
    monitor.settle()
    report = monitor.report()
    # Queueing, not holding. One stray run may read as blocked on a virtual machine (the
    # hypervisor's stolen time looks like sleeping to schedstat): never a pattern. On a
    # loaded machine a run, or a late beat, that mostly waited for a CPU is preempted.
    kinds = report.kinds
    assert kinds.get("queued", 0) >= 3, kinds
    assert kinds.get("blocked", 0) + kinds.get("computing", 0) <= 1, kinds
    held = report.slices.held
    assert held.get("blocked", 0) + held.get("computing", 0) <= 1, held
    assert report.slices.count >= 320
    assert report.slices.busy_s >= 0.3


def test_short_hiccups_are_lag_not_stalls(monitor):
    for _ in range(20):
        blocking_sleep(0.002)
        gevent.sleep(0.002)
    report = monitor.report()
    assert report.max_ms >= 1.5  # the lag is seen
    # ...and no 2 ms run holds the hub: a late beat this VM may add now and then (it once
    # made max_ms 10+ here) is queueing or preemption, never a held run
    assert set(report.slices.held) <= {"preempted"}, report.slices.held
    assert not {"blocked", "computing"} & set(report.kinds)


def count_clock_reads(tracer: SliceTracer) -> list[int]:
    """A list that grows by one at each read of the hub's clocks by the tracer."""
    reads: list[int] = []
    read_ns = tracer._sched.read_ns

    def counted() -> tuple[int, int]:
        reads.append(1)
        return read_ns()

    tracer._sched.read_ns = counted  # type: ignore[method-assign]
    return reads


def test_between_held_slices_the_clocks_are_read_once_per_clocks_period():
    # Their system calls were a large part of what watching cost a saturated worker: read
    # every 5 ms (half the threshold), not at every slow path (2.5 ms), and at the end of
    # every held slice. The slow path is driven by hand, on made-up times: no machine's load
    # can move the count.
    tracer = SliceTracer(threshold_s=0.01)
    reads = count_clock_reads(tracer)
    targets, ms = (object(), object()), 1_000_000
    now = tracer.clocks()[0]
    for _ in range(80):  # 200 ms of short slices, a slow path due every 2.5 ms
        now += 2_500_000
        tracer._slow_path(targets, now - ms // 10, now, ms // 10)
    assert len(reads) == 40
    now += 20 * ms
    tracer._slow_path(targets, now - 20 * ms, now, 20 * ms)  # a held slice: read at its end
    assert len(reads) == 41 and sum(tracer.held_count.values()) == 1
    tracer.stop()


def test_where_the_clock_thread_reads_the_clocks_the_hub_reads_them_only_for_held_slices():
    # The compiled clock's watch thread reads the hub thread's clocks (probe.switch_clock):
    # the hub's own reads, system calls, were most of what watching cost a saturated worker.
    m = LoopMonitor(threshold_s=0.01, compiled=True).start()
    tracer = m.tracer
    reads = count_clock_reads(tracer)
    try:
        end = time.monotonic() + 0.2
        while time.monotonic() < end:  # 200 ms of short slices
            gevent.sleep(0.0005)
        # (A loaded machine may hold a slice, or make a beat late: each may read once.)
        expected = sum(tracer.held_count.values()) + sum(m.kinds.values())
        assert len(reads) <= expected and tracer.clocks()[0] > tracer.since
        blocking_sleep(0.03)  # a held slice: read at its end, and blocked from the thread's
        gevent.sleep(0.01)
        assert tracer.held_count["blocked"] == 1, tracer.held_count
        assert len(reads) <= sum(tracer.held_count.values()) + sum(m.kinds.values())
    finally:
        m.stop()


def test_the_guard_reads_the_clocks_at_every_slow_path():
    from probe.pytest_plugin import HubBlockGuard

    guard = HubBlockGuard(max_ms=10)
    try:
        tracer = guard.monitor.tracer
        assert tracer._clocks_ns == tracer._refresh_ns > 0
    finally:
        guard.stop()


def test_the_watchdog_backs_off_after_waking_for_a_preempted_hub():
    # Each wake needs the GIL, which a hub preempted in Python holds: after a wake that finds
    # it waited for a CPU, the alarm is pushed further, up to the threshold, for a second.
    # (Its wakes judged here, without the watchdog thread: no real wake interleaves.)
    from probe.monitor import BACK_OFF_FOR_NS

    monitor = LoopMonitor(interval_s=0.001, threshold_s=0.01).start(without=("watchdog",))
    try:
        _judge_wakes(monitor, BACK_OFF_FOR_NS)
    finally:
        monitor.stop()


def test_the_watchdog_backs_off_by_the_same_steps_where_the_slow_path_runs_rarely():
    # Where the compiled clock's thread reads the clocks, the slow path runs once per
    # threshold: the back-off still starts at a quarter of it (from a full threshold, the
    # compute control's 15 ms loop went unsampled in up to 93% of its runs).
    from probe.monitor import BACK_OFF_FOR_NS

    monitor = LoopMonitor(interval_s=0.001, threshold_s=0.01).start(without=("watchdog",))
    monitor.tracer.use_snapshots(lambda t: None, monitor.threshold_s)
    try:
        assert monitor.tracer.refresh_ns == monitor.tracer.threshold_ns
        _judge_wakes(monitor, BACK_OFF_FOR_NS)
    finally:
        monitor.stop()


def _judge_wakes(monitor: LoopMonitor, back_off_for_ns: int) -> None:
    tracer, ms = monitor.tracer, 1_000_000
    at, _, runq = tracer.clocks()
    base = monitor.sample_from_s
    monitor._judge_wake(at + 8 * ms, young=False, sampled=False, runq=runq + 6 * ms)
    assert tracer.alarm_after_s == base + tracer.threshold_ns / 4e9
    for _ in range(5):
        monitor._judge_wake(at + 8 * ms, young=True, sampled=False, runq=runq)
    assert tracer.alarm_after_s == base + tracer.threshold_ns / 1e9  # doubled, then capped
    monitor._judge_wake(at + 8 * ms, young=False, sampled=True, runq=runq)
    assert tracer.alarm_after_s > base  # a slice sampled again is no sign the hub is free
    monitor._judge_wake(at + 8 * ms, young=False, sampled=False, runq=runq + 1 * ms)
    assert tracer.alarm_after_s == base  # a new slice held while the hub could run
    monitor._judge_wake(at + 8 * ms, young=True, sampled=False, runq=runq)
    monitor._backed_off_at = time.perf_counter_ns() - back_off_for_ns - 1  # a second ago
    gevent.sleep(0.005)  # a heartbeat
    assert tracer.alarm_after_s == base
    assert monitor._judge_wake(at, young=True, sampled=False, runq=None) is None  # no record
    assert tracer.alarm_after_s == base


def test_where_a_late_beat_went_decides_its_kind():
    ms = 1_000_000
    assert stall_kind(0.05, (0, 0), (45 * ms, 0)) == "busy"
    assert stall_kind(0.05, (0, 0), (2 * ms, 40 * ms)) == "preempted"
    assert stall_kind(0.05, (0, 0), (2 * ms, 1 * ms)) == "blocked"


def test_precise_mode_counts_blocking_not_cooperative_waiting(monitor):
    recorded: list[int] = []
    with monitor.tracer.precise() as clock:
        def blocking() -> None:
            with clock.call(recorded.append):
                blocking_sleep(0.005)

        def cooperative() -> None:
            with clock.call(recorded.append):
                gevent.sleep(0.005)

        gevent.joinall([gevent.spawn(blocking), gevent.spawn(cooperative)])
    blocked_us, cooperative_us = recorded
    assert 4500 <= blocked_us <= 20000
    assert cooperative_us < 500


def test_a_timed_lock_measures_who_waited_for_a_busy_connection():
    contention.STATS.reset()
    lock = contention.TimedLock(Semaphore())

    def holder() -> None:
        with lock:
            gevent.sleep(0.03)

    def waiter() -> None:
        with lock:  # a second greenlet wants the same "connection"
            pass

    gevent.joinall([gevent.spawn(holder), gevent.spawn(waiter)])
    report = contention.STATS.report()
    assert (report.acquisitions, report.contended) == (2, 1)
    assert 25 <= report.wait_total_ms <= 200
    assert "in waiter" in report.first_frame


def test_starting_and_stopping_monitors_leaks_no_file_descriptor(compiled):
    import os

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = fds()
    for _ in range(20):
        m = LoopMonitor(compiled=compiled).start()
        gevent.sleep(0.005)
        m.stop()
        gevent.sleep(0.005)
    # The last watchdog closes its files itself once it wakes: it may be scheduled late.
    deadline = time.monotonic() + 2
    while fds() > before + 1 and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert fds() <= before + 1


def test_a_report_taken_after_stopping_still_knows_the_cpu_queue(compiled):
    # The worker stops watching before it reports: closing schedstat is not losing it.
    m = LoopMonitor(interval_s=0.001, threshold_s=0.01, compiled=compiled).start()
    gevent.sleep(0.01)
    m.stop()
    assert m.report().missing == ()


def test_a_blocking_hub_callback_is_held_and_an_idle_poll_is_not(compiled):
    import threading

    from gevent.monkey import get_original

    from probe.frames import in_loop_poll, sample_stack
    from probe.sched import Wchan

    # The hub idle in its event loop's poll, as another thread (the watchdog) samples it:
    # the hub's run loop, asleep in epoll. A VM's stolen time makes that wait long.
    sampled: list = []
    ident, tid = threading.get_ident(), threading.get_native_id()

    def watchdog() -> None:
        blocking_sleep(0.03)
        wchan = Wchan(tid)
        sampled.append((sample_stack(ident), wchan.read()))
        wchan.close()

    get_original("_thread", "start_new_thread")(watchdog, ())
    gevent.sleep(0.1)
    ((stack, where),) = sampled
    assert in_loop_poll(stack, where), (stack, where)
    assert in_loop_poll(stack, "futex_wait_queue", "0")  # woken, not yet on a CPU
    assert not in_loop_poll(stack, "hrtimer_nanosleep", "futex_wait_queue")
    assert not in_loop_poll((), where) and not in_loop_poll(stack, "")
    # A builtin run as a callback that blocks the hub shows no frame above the run loop
    # either, but sleeps elsewhere than in epoll: still a blocked, held hub.
    m = LoopMonitor(interval_s=0.001, threshold_s=0.01, compiled=compiled).start()
    gevent.sleep(0.02)
    m.reset()
    gevent.get_hub().loop.run_callback(blocking_sleep, 0.05)
    gevent.sleep(0.1)
    m.settle()
    slices = m.report().slices
    m.stop()
    assert slices.held.get("blocked") == 1, slices.held
    (held,) = [h for h in slices.longest if h.kind == "blocked"]
    # (What the VM's host took from this CPU meanwhile, in 10 ms ticks, counts as waiting.)
    assert held.hub and held.off_cpu_ms >= 20 and held.off_cpu_ms + held.runq_ms >= 45


def test_parts_left_out_to_measure_their_cost_are_not_running():
    import os

    from probe.monitor import PARTS

    before = len(os.listdir("/proc/self/fd"))
    m = LoopMonitor(interval_s=0.001, threshold_s=0.01).start(without=PARTS)
    blocking_sleep(0.03)
    gevent.sleep(0.01)
    report = m.report()
    m.stop()
    assert report.slices.count == 0 and report.stalls == 0 and report.lag_hdr
    assert len(os.listdir("/proc/self/fd")) <= before + 1  # the watchdog's alarm closed


def test_time_the_vms_host_stole_during_a_held_run_is_waiting_for_a_cpu_not_blocking(
        monitor, tmp_path):
    # To the guest, a thread whose CPU the host took is neither running nor waiting for a
    # CPU: it looks asleep. /proc/stat's steal column is the only record; a file stands in
    # for it here, since no test can make a host steal.
    from probe.sched import Steal
    from tests.test_sched import write_stat

    stat = tmp_path / "stat"
    write_stat(stat, 500, 500)
    tracer = monitor.tracer
    if tracer._steal is not None:
        tracer._steal.close()
    tracer._steal = Steal(str(stat))
    tracer._stolen = tracer._steal.read()
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    gevent.sleep(0)  # the next run begins here, not with the setup above
    lost = round(100 / tick_ms)
    write_stat(stat, 500 + lost, 500 + lost)  # the CPUs lost 100 ms
    blocking_sleep(0.1)
    gevent.sleep(0)
    lost = round(130 / tick_ms)
    write_stat(stat, 500 + lost, 500 + lost)  # then 30 ms more
    blocking_sleep(0.1)
    monitor.settle()
    stolen, blocked = sorted(monitor.report().slices.longest[:2], key=lambda h: h.t)
    assert stolen.kind == "preempted" and stolen.off_cpu_ms < 25 and stolen.runq_ms >= 90
    # Only what was stolen is taken off: the rest of the run was asleep, and blocking.
    assert blocked.kind == "blocked" and blocked.off_cpu_ms >= 60 and blocked.runq_ms >= 30
