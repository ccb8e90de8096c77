"""Every number a verdict depends on, in one place, with how it was measured.

Measured on the project's 2-core machine (psycopg 3.3.8, psycopg2 2.9.13, gevent 26.9,
PostgreSQL 15 and 18); `benchmarks/` has the scripts that print them again.
"""

from __future__ import annotations

# Serialised when C concurrent sleeps took more than halfway from "all overlap" (1x) to "one
# by one" (Cx). Measured: cooperative drivers 1.0-1.1x, blocking ones 16.2-16.7x at C=16.
SERIAL_FRACTION = 0.5

# Hub-thread CPU / wall while every probe connection waits on pg_sleep. Measured: 0.01-0.13
# for real drivers, 0.95-1.0 for the spinning control.
BURN_RATIO = 0.5

# Median per-query time a probe query held the hub while off-CPU. Measured: 0.000-0.001 ms for
# cooperative drivers; 0.56 / 1.06 / 2.07 ms for 0.5 / 1 / 2 ms partial blocks; 50 ms for wait_c.
BLOCKED_MS = 0.2

# Held slices: a greenlet (or the hub) ran longer than --block-threshold-ms without yielding.
# Flagged when such slices add up to this share of the load window and there are at least
# MIN_HELD of them: one GC pause is not a pattern. Blocked and computing are judged apart.
# Measured (50 users, one worker, 8 s): blocking drivers 60-100% blocked; Flask apps with a
# pool and 100 rows of JSON per request 0-2% computing, in slices of 10-22 ms at most.
HELD_SHARE = 0.05
MIN_HELD = 3
# ...and held asleep again after a pause: runs more than this apart are separate bursts, and
# blocking needs two. A stall of the machine itself holds every run at once, in one burst
# (a VM whose host takes the CPU: the guest counts that time neither on the CPU nor waiting
# for one, so it reads as asleep): CI here once saw psycopg-binary's bench held asleep 6
# times in 130 ms (10% of a 1.5 s window), in one C call, and never again in 11 reruns.
BURST_GAP_S = 0.25
# ...and a burst lasts this long at most: no one stall of the machine holds runs back to back
# for seconds, a blocking call does (an app blocking 15 ms a request: 407 runs held asleep
# in 8 s, 81% of the window, read as one burst and the app as healthy before this bound).
BURST_MAX_S = 1.0

# A worker whose greenlets ran this share of the window is saturated: its requests queue
# behind each other although no slice is long (capacity, not a pathology).
SATURATED_BUSY = 0.8

# Share of the time in driver calls spent waiting for a connection another greenlet held.
# Measured: 0 with a connection per greenlet; 0.88 (16 greenlets) to 0.97 (64) on one.
CONTENTION_SHARE = 0.25

LOADGEN_SATURATION = 0.9  # share of one core used by the busiest locust process
MAX_ERROR_RATE = 0.01
MIN_QUERIES = 100
MIN_PROBE_QUERIES = 8

# psycopg releases that pick wait_c under gevent whatever the import order (issue #527):
# 3.1.5 to 3.1.13; 3.1.14 (PR #688) checks whether gevent patched select.
PSYCOPG_GEVENT_CHECK = (3, 1, 14)


def serialised_threshold(concurrency: int) -> float:
    return 1 + SERIAL_FRACTION * (concurrency - 1)


def probe_rounds(rounds: int, concurrency: int) -> int:
    """The most sleep rounds a probe may take: the rounds asked for, or enough for the blocked
    time to be judged (MIN_PROBE_QUERIES queries) when there are few connections."""
    return max(1, rounds, -(-MIN_PROBE_QUERIES // concurrency))
