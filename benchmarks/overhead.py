"""What measuring costs the app: the sample app's throughput with the measurement on and off.

    .venv/bin/python benchmarks/overhead.py [--pairs 6] [--duration 8] [--users 50]

`gevent-probe run --scenario select1` saturates one gunicorn worker (psycopg-binary): its RPS
is the worker's capacity. "On" is the tool as it runs: the slice tracer on every greenlet
switch, the 1 ms heartbeat, the watchdog thread, the timed connection locks. "Off" sets
GEVENT_PROBE_WATCH=0, which leaves the agent's routes but none of that. Runs alternate, off
then on, so that drift hits both alike. Printed: each pair, the worker's CPU per request (on a
2-core machine shared with locust and PostgreSQL, RPS also moves with who got the cores: the
CPU a request costs is the steadier figure), and last the RPS cost, 1 - median(on) /
median(off). One embedded PostgreSQL for everything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from probe import postgres, results, session
from probe.settings import build


def measure(database: postgres.Database, watch: bool, users: int, duration: float,
            rate: float | None) -> tuple[float, float]:
    """(RPS, the worker's CPU µs per request) of one run."""
    os.environ["GEVENT_PROBE_WATCH"] = "1" if watch else "0"
    settings = build("run", {"variants": "psycopg-binary", "scenario": "select1",
                             "users": users, "duration": duration, "rate": rate})
    (result,) = session.run(settings, database, results.new_run_id("run")).variants
    http = result.measured.http
    if http is None or http.loadgen_saturated:
        raise SystemExit(f"the load generator could not saturate the app: {result.evidence}")
    return http.rps, result.measured.cpu.ms_per_query * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rate", type=float, default=None)
    args = parser.parse_args()
    on: list[tuple[float, float]] = []
    off: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    with postgres.database(None) as database:
        print(f"{database.describe()}\n")
        print("| pair | off RPS | on RPS | on / off | off CPU µs/req | on CPU µs/req |")
        print("|---|---|---|---|---|---|")
        for pair in range(1, args.pairs + 1):
            off.append(measure(database, False, args.users, args.duration, args.rate))
            on.append(measure(database, True, args.users, args.duration, args.rate))
            print(f"| {pair} | {off[-1][0]:,.0f} | {on[-1][0]:,.0f} | "
                  f"{on[-1][0] / off[-1][0]:.3f} | {off[-1][1]:.0f} | {on[-1][1]:.0f} |",
                  flush=True)
    os.environ.pop("GEVENT_PROBE_WATCH", None)
    ratios = [a[0] / b[0] for a, b in zip(on, off, strict=True)]
    print(f"\n{time.perf_counter() - t0:.0f} s in all; pair RPS ratios median "
          f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")
    cpu_on, cpu_off = (statistics.median(x[1] for x in on),
                       statistics.median(x[1] for x in off))
    print(f"CPU per request: median on {cpu_on:.0f} µs vs off {cpu_off:.0f} µs "
          f"(+{100 * (cpu_on / cpu_off - 1):.1f}%: the RPS a saturated worker loses)")
    rps_on, rps_off = statistics.median(x[0] for x in on), statistics.median(x[0] for x in off)
    print(f"measurement cost: {100 * (1 - rps_on / rps_off):.1f}% of RPS (median on "
          f"{rps_on:,.0f} vs off {rps_off:,.0f})")


if __name__ == "__main__":
    main()
