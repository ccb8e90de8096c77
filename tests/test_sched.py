"""The scheduler's accounting: a thread's clocks, and the time a VM's host stole."""

import os
import time

from probe.sched import SchedStat, Steal

STAT = """cpu  3738060 38739 654950 5632905 33696 0 151509 {total} 0 0
cpu0 1209867 20850 286550 3527056 6311 0 60891 {cpu0} 0 0
cpu1 2528192 17888 368400 2105849 27385 0 90617 {cpu1} 0 0
intr 55309465 0 0 0 0 0 0
ctxt 105208563
"""


def write_stat(path, cpu0: int, cpu1: int) -> None:
    path.write_text(STAT.format(total=cpu0 + cpu1, cpu0=cpu0, cpu1=cpu1))


def write_thread_stat(path, cpu: int) -> None:
    # /proc/thread-self/stat: the CPU the thread last ran on is the 39th field.
    path.write_text("4242 (python (x) 3) R " + " ".join(["0"] * 35) + f" {cpu} 0 0 0\n")


def test_steal_is_what_the_cpu_the_thread_runs_on_lost(tmp_path):
    stat, thread_stat = tmp_path / "stat", tmp_path / "thread-stat"
    write_stat(stat, 84025, 71135)
    write_thread_stat(thread_stat, 0)
    steal = Steal(str(stat), str(thread_stat))
    before = steal.read()
    assert steal.active and before == (84025, 71135)
    write_stat(stat, 84026, 71138)  # cpu0 lost one tick, cpu1 three
    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert steal.cpu() == 0 and steal.between_ns(before, steal.read()) == tick_ns
    write_thread_stat(thread_stat, 1)
    assert steal.between_ns(before, steal.read()) == 3 * tick_ns
    assert steal.between_ns(before, (84026,)) == 0  # a CPU went away: nothing is inferred
    steal.close()
    assert not steal.active and steal.read() == ()


def test_where_the_threads_cpu_is_unknown_the_cpu_that_lost_most_counts(tmp_path):
    stat = tmp_path / "stat"
    write_stat(stat, 10, 10)
    steal = Steal(str(stat), str(tmp_path / "no-thread-stat"))
    before = steal.read()
    write_stat(stat, 12, 11)
    assert steal.cpu() is None
    assert steal.between_ns(before, steal.read()) == 2 * 1_000_000_000 // os.sysconf(
        "SC_CLK_TCK")


def test_where_nothing_was_ever_stolen_or_the_file_is_not_understood_steal_is_not_read(
        tmp_path):
    stat = tmp_path / "stat"
    write_stat(stat, 0, 0)  # bare metal, or a host that does not report it
    assert not Steal(str(stat)).active
    stat.write_text("cpu  1 2 3\ncpu0 1 2 3\n")  # an older kernel's columns
    assert not Steal(str(stat)).active
    assert not Steal(str(tmp_path / "missing")).active


def test_this_machines_steal_and_clocks_only_grow():
    steal = Steal()
    first = steal.read()
    assert not steal.active or len(first) == os.cpu_count()
    assert not steal.active or steal.cpu() in range(len(first))
    sched = SchedStat()
    cpu, runq = sched.read_ns()
    end = time.perf_counter() + 0.02
    while time.perf_counter() < end:
        pass
    assert steal.between_ns(first, steal.read()) >= 0
    cpu2, runq2 = sched.read_ns()
    # The loop's 20 ms were on a CPU, or waiting for one (a loaded machine); what the VM's
    # host took reads as neither, so only most of it is asked for.
    assert cpu2 - cpu + runq2 - runq >= 10_000_000 and runq2 >= runq
