"""How small a per-query block of the hub the probe catches, and how often it cries wolf.

    .venv/bin/python benchmarks/partial_block.py [--healthy-runs 20] [--runs 3]

For each block length (0.5, 1, 2, 5 ms) the partial-block control is benched --runs times:
caught means `hub-blocking`. Then the healthy drivers are benched --healthy-runs times: any
verdict other than `healthy` is a false alarm. One embedded PostgreSQL for everything.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from probe import postgres, results, variant_loop
from probe.settings import build

HEALTHY = "psycopg2-green,psycopg-binary,psycopg-c,psycopg-python"


def bench(database: postgres.Database, **flags: object) -> list:
    settings = build("bench", dict(flags))
    return list(variant_loop.run(settings, database, results.new_run_id("bench")).variants)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--healthy-runs", type=int, default=20)
    args = parser.parse_args()
    t0 = time.perf_counter()
    with postgres.database(None) as database:
        print(f"{database.describe()}\n")
        print("| block per query | caught | blocked p50 (ms) | sleeps |")
        print("|---|---|---|---|")
        for ms in (0.5, 1.0, 2.0, 5.0):
            runs = [bench(database, variants="partial-block", partial_block_ms=ms)[0]
                    for _ in range(args.runs)]
            caught = sum(r.verdict == "hub-blocking" for r in runs)
            p50 = "/".join(f"{r.measured.blocked_ms.p50:.2f}" for r in runs)
            ratio = "/".join(f"{r.measured.serialization.ratio:.1f}x" for r in runs)
            print(f"| {ms:g} ms | {caught} of {len(runs)} | {p50} | {ratio} |", flush=True)
        verdicts: Counter[str] = Counter()
        worst = 0.0
        for _ in range(args.healthy_runs):
            for r in bench(database, variants=HEALTHY):
                verdicts[(r.name, r.verdict)] += 1
                worst = max(worst, r.measured.blocked_ms.p50)
        alarms = sum(n for (_, verdict), n in verdicts.items() if verdict != "healthy")
        print(f"\nhealthy drivers ({HEALTHY}), {args.healthy_runs} runs each: "
              f"{alarms} false alarm(s); largest blocked p50 {worst:.3f} ms")
        for (name, verdict), n in sorted(verdicts.items()):
            print(f"  {name}: {verdict} x{n}")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
