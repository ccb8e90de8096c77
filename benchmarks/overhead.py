"""What measuring costs the app: the sample app's throughput with the measurement on and off.

    .venv/bin/python benchmarks/overhead.py [--pairs 6] [--duration 8] [--users 50]

`gevent-probe run --scenario select1` saturates one gunicorn worker (psycopg-binary): its RPS
is the worker's capacity. "On" is the tool as it runs: the slice tracer on every greenlet
switch, the 1 ms heartbeat, the watchdog thread, the timed connection locks. "Off" sets
GEVENT_PROBE_WATCH=0, which leaves the agent's routes but none of that. Runs alternate, off
then on, so that drift hits both alike; the cost is 1 - median(on) / median(off), printed
last, with each pair's own ratio. One embedded PostgreSQL for everything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from probe import postgres, results, session
from probe.settings import build


def rps(database: postgres.Database, watch: bool, users: int, duration: float) -> float:
    os.environ["GEVENT_PROBE_WATCH"] = "1" if watch else "0"
    settings = build("run", {"variants": "psycopg-binary", "scenario": "select1",
                             "users": users, "duration": duration})
    (result,) = session.run(settings, database, results.new_run_id("run")).variants
    http = result.measured.http
    if http is None or http.loadgen_saturated:
        raise SystemExit(f"the load generator could not saturate the app: {result.evidence}")
    return http.rps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args()
    on: list[float] = []
    off: list[float] = []
    t0 = time.perf_counter()
    with postgres.database(None) as database:
        print(f"{database.describe()}\n")
        print("| pair | off RPS | on RPS | on / off |")
        print("|---|---|---|---|")
        for pair in range(1, args.pairs + 1):
            off.append(rps(database, False, args.users, args.duration))
            on.append(rps(database, True, args.users, args.duration))
            print(f"| {pair} | {off[-1]:,.0f} | {on[-1]:,.0f} | {on[-1] / off[-1]:.3f} |",
                  flush=True)
    os.environ.pop("GEVENT_PROBE_WATCH", None)
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    print(f"\n{time.perf_counter() - t0:.0f} s in all; pair ratios median "
          f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")
    cost = 1 - statistics.median(on) / statistics.median(off)
    print(f"measurement cost: {100 * cost:.1f}% of RPS (median on {statistics.median(on):,.0f}"
          f" vs off {statistics.median(off):,.0f})")


if __name__ == "__main__":
    main()
