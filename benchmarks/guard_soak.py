"""The pytest guard, run after run: does it pass cooperative code and fail what holds the hub?

    .venv/bin/python benchmarks/guard_soak.py [--runs 20]

Writes a user's test suite to a temporary folder (conftest.py patches with gevent, as a user's
does) and runs it with pytest --runs times, each in a fresh process, against an embedded
PostgreSQL: 8 greenlets each connect with psycopg 3 and `pg_sleep(50 ms)` (must pass at the
default max_ms=10: the handshakes queue, none holds the hub); the same with psycopg2 and no
psycogreen (must fail, naming the connect line); a loop that computes 30 ms (must fail as
computing). Prints the tally per test last.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from probe import postgres

CONFTEST = "from gevent import monkey\nmonkey.patch_all()\n"
TESTS = '''
import os, time
import gevent, psycopg, psycopg2

DSN = os.environ["GUARD_SOAK_DSN"]


def connect_and_sleep(module):
    def one():
        conn = module.connect(DSN)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(0.05)")
        finally:
            conn.close()
    gevent.joinall([gevent.spawn(one) for _ in range(8)], raise_error=True)


def test_psycopg3_connects(hub_block_guard):
    connect_and_sleep(psycopg)


def test_psycopg2_connects(hub_block_guard):
    connect_and_sleep(psycopg2)


def test_computing(hub_block_guard):
    end = time.perf_counter() + 0.03
    while time.perf_counter() < end:
        pass
'''
EXPECTED = {"test_psycopg3_connects": "passed", "test_psycopg2_connects": "failed",
            "test_computing": "failed"}


def once(folder: Path, dsn: str) -> dict[str, tuple[str, str, str]]:
    """{test: (outcome, what the failure said that matters, its first line)} of one run."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "-rA", "test_guarded.py"], capture_output=True, text=True,
                          cwd=folder, timeout=300, env={**os.environ, "GUARD_SOAK_DSN": dsn})
    out = proc.stdout
    results = {}
    for name in EXPECTED:
        outcome = "passed" if f"PASSED test_guarded.py::{name}" in out else "failed"
        section = out.split(f"_ {name} _", 1)[1].split("\n_", 1)[0] if f"_ {name} _" in out \
            else ""
        said = ("names the connect" if "module.connect(DSN)" in section else
                "computing" if "computing:" in section else "")
        first = next((line.strip(" E") for line in section.splitlines()
                      if "held the gevent hub" in line), "")
        results[name] = (outcome, said, first)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    tally: Counter[tuple[str, str, str]] = Counter()
    surprises: list[str] = []
    t0 = time.perf_counter()
    with postgres.database(None) as database, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conftest.py").write_text(CONFTEST)
        (folder / "test_guarded.py").write_text(TESTS)
        for _ in range(args.runs):
            for name, (outcome, said, first) in once(folder, database.dsn).items():
                tally[(name, outcome, said)] += 1
                if outcome != EXPECTED[name]:
                    surprises.append(f"{name}: {first or outcome}")
    print(*surprises, sep="\n")
    print(f"{time.perf_counter() - t0:.0f} s in all, {args.runs} runs")
    for (name, outcome, said), n in sorted(tally.items()):
        ok = "as expected" if outcome == EXPECTED[name] else "NOT as expected"
        print(f"{name}: {outcome} {n} of {args.runs} ({ok}){'; ' + said if said else ''}")


if __name__ == "__main__":
    main()
