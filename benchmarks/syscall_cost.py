"""What the watch's system calls cost, back to back and after a few milliseconds of Python.

    .venv/bin/python benchmarks/syscall_cost.py [--calls 1500] [--gaps 0,0.1,2.5]

The slice tracer reads the hub thread's clocks (probe.sched) between greenlet switches, a
few milliseconds apart, with the app's Python in between. A microbenchmark that calls them
back to back prices them warm; this one also spins in Python for a gap before each call, as
an app does, and prints the median and 90th percentile per call and gap. On the 2-core VM
this was written on (two runs, 20 minutes apart): a read of /proc/thread-self/schedstat
took 2.9-3.0 µs back to back and 17-24 µs after 2.5 ms of Python, /proc/stat 10-14 and
31-42 µs, getppid() 0.3-0.5 and 1.6-2.1 µs. What a system call costs depends on what ran before it:
the slice tracer's reads of the hub's clocks (every 2.5 ms, probe.slices) cost a saturated
worker several times what a back-to-back microbenchmark of them says.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from probe.sched import PATH as SCHEDSTAT
from probe.sched import STAT_PATH
from probe.syscalls import Reader


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def per_call_us(call: Callable[[], object], calls: int, gap_s: float) -> tuple[float, float]:
    found = []
    for _ in range(calls):
        spin(gap_s)
        start = time.perf_counter_ns()
        call()
        found.append(time.perf_counter_ns() - start)
    found.sort()
    return found[len(found) // 2] / 1e3, found[int(len(found) * 0.9)] / 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--gaps", default="0,0.1,2.5", help="ms of Python before each call")
    args = parser.parse_args()
    readers = [Reader(SCHEDSTAT, 128), Reader(STAT_PATH, 1 << 16)]
    calls: dict[str, Callable[[], object]] = {
        "getppid()": os.getppid,
        "thread CPU clock": time.thread_time_ns,
        "schedstat": readers[0].read,
        "/proc/stat (steal)": readers[1].read,
    }
    print("| call | " + " | ".join(f"after {g} ms: median, p90 µs" for g in
                                     args.gaps.split(",")) + " |")
    print("|---|" + "---|" * len(args.gaps.split(",")))
    for name, call in calls.items():
        cells = [per_call_us(call, args.calls, float(gap) / 1000)
                 for gap in args.gaps.split(",")]
        print(f"| {name} | " + " | ".join(f"{m:.1f}, {p:.1f}" for m, p in cells) + " |")
    for reader in readers:
        reader.close()


if __name__ == "__main__":
    main()
