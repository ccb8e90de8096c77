"""Verdicts on apps heavier than the sample app, at several loads, run after run.

    .venv/bin/python benchmarks/real_apps.py [--runs 10] [--users 10,50,150] [--duration 8]
        [--apps shop_app,catalog_app,connect_app]

Each app of examples/ runs under `gevent-probe run --app APP:app --locustfile
examples/app_locustfile.py --variants psycopg-binary` (one gunicorn worker): shop_app (Flask,
psycopg_pool of 10, a few rows per response), catalog_app (Flask, a pool as large as the users,
100 rows of JSON per response), connect_app (a connection per request). Every wait in them is
cooperative, so anything but `healthy` is a false alarm. Printed per run: the verdict, RPS,
how busy the worker was, the held slices and the longest run; then a tally per app and load,
false alarms last. One embedded PostgreSQL for everything.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

from probe import postgres, results, variant_loop
from probe.settings import build

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def measure(database: postgres.Database, app: str, users: int, duration: float):
    os.environ["CATALOG_POOL_SIZE"] = str(users)  # "a pool as large as the users"
    settings = build("run", {"app": f"{app}:app", "chdir": EXAMPLES, "users": users,
                             "locustfile": EXAMPLES / "app_locustfile.py",
                             "variants": "psycopg-binary", "duration": duration})
    (result,) = variant_loop.run(settings, database, results.new_run_id("run")).variants
    return result


def line(app: str, users: int, r) -> str:
    m, s = r.measured, r.measured.slices
    rps = m.http.rps if m.http else 0.0
    held = f"{s.blocked} blocked / {s.computing} computing" if s else "-"
    longest = f"{s.length_ms.max:.1f} ms" if s else "-"
    notes = " ".join("[saturated]" if n.startswith("Saturated") else "[connects]"
                     for n in r.notes)
    return (f"| {app} | {users} | {r.verdict} | {rps:,.0f} | "
            f"{100 * s.busy_share:.0f}% | {held} | {longest} | {notes} |" if s else
            f"| {app} | {users} | {r.verdict} | {rps:,.0f} | - | - | - | |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--users", default="10,50,150")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--apps", default="shop_app,catalog_app,connect_app")
    args = parser.parse_args()
    loads = [int(u) for u in args.users.split(",")]
    apps = args.apps.split(",")
    tally: Counter[tuple[str, int, str]] = Counter()
    t0 = time.perf_counter()
    with postgres.database(None) as database:
        print(f"{database.describe()}\n")
        print("| app | users | verdict | RPS | busy | held slices | longest | notes |")
        print("|---|---|---|---|---|---|---|---|")
        for _ in range(args.runs):
            for app in apps:
                for users in loads:
                    r = measure(database, app, users, args.duration)
                    tally[(app, users, r.verdict)] += 1
                    print(line(app, users, r), flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s in all\n")
    for app in apps:
        for users in loads:
            got = {v: n for (a, u, v), n in tally.items() if (a, u) == (app, users)}
            print(f"{app} at {users} users: " + ", ".join(f"{v} x{n}" for v, n in got.items()))
    alarms = sum(n for (_, _, v), n in tally.items() if v != "healthy")
    print(f"\nfalse alarms: {alarms} of {sum(tally.values())} runs")


if __name__ == "__main__":
    main()
