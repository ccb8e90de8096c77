"""Each workload's outcome per variant: the README's table, measured again.

    .venv/bin/python benchmarks/workloads.py [--duration 3]

`gevent-probe bench --workload W` for every workload, with a connection per greenlet and
with one shared connection, over the drivers; prints a Markdown table of the verdicts (and,
for errors, the first message; for deadlocks, what the server saw). One embedded PostgreSQL
for everything.
"""

from __future__ import annotations

import argparse
import time

from probe import postgres, results, variant_loop
from probe.settings import build

VARIANTS = "psycopg2,psycopg2-green,psycopg-binary,psycopg-python,psycopg-python-first"
WORKLOADS = ("select1", "rowlock", "copy", "notify", "connect", "mixed")


def cell(r) -> str:
    m = r.measured
    if r.verdict == "errors":
        top = max(m.db.errors_by_message.items(), key=lambda kv: kv[1])[0]
        return f"errors ({top[:60]}…)" if len(top) > 60 else f"errors ({top})"
    if r.verdict == "deadlock" and m.deadlock is not None:
        return f"deadlock ({m.deadlock.how})"
    if m.db.units_by_kind and len(m.db.units_by_kind) > 1:
        kinds = m.db.units_by_kind
        return f"{r.verdict} ({min(kinds.values()):,}-{max(kinds.values()):,} units by kind)"
    return r.verdict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    names = VARIANTS.split(",")
    t0 = time.perf_counter()
    with postgres.database(None) as database:
        print(f"{database.describe()}\n")
        print("| workload | connections | " + " | ".join(names) + " |")
        print("|---|---|" + "---|" * len(names))
        for workload in WORKLOADS:
            for connections in ("per-greenlet", "shared"):
                settings = build("bench", {"variants": VARIANTS, "workload": workload,
                                           "connections": connections,
                                           "duration": args.duration})
                found = {r.name: r for r in variant_loop.run(
                    settings, database, results.new_run_id("bench")).variants}
                row = [cell(found[n]) if n in found else "-" for n in names]
                print(f"| {workload} | {connections} | " + " | ".join(row) + " |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
