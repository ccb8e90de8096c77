"""The pytest guard, run after run: does it pass cooperative code and fail what holds the hub?

    .venv/bin/python benchmarks/guard_soak.py [--runs 20]

Writes the user's test suite of tests/test_pytest_plugin.py to a temporary folder (its
conftest.py patches with gevent, as a user's does) and runs three of its tests --runs times,
each run a fresh pytest process, against an embedded PostgreSQL: 8 greenlets each connect
with psycopg 3 and `pg_sleep(50 ms)` (must pass at the default max_ms=10: the handshakes
queue, none holds the hub); the same with psycopg2 and no psycogreen (must fail, naming the
connect line); a loop that computes 30 ms (must fail as computing). Prints the tally per test
last.
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

from probe import postgres, protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The user's suite the tests run once, run here again and again (one text, two uses).
from tests.test_pytest_plugin import CONFTEST, TESTS  # noqa: E402

EXPECTED = {"test_concurrent_cooperative_connects_pass": "passed",
            "test_a_blocking_connect_fails": "failed",
            "test_computing_in_a_loop_fails_as_computing": "failed"}


def once(folder: Path, dsn: str) -> dict[str, tuple[str, str, str]]:
    """{test: (outcome, what the failure said that matters, its first line)} of one run."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "-rA", "test_guarded.py", "-k", " or ".join(EXPECTED)],
                          capture_output=True, text=True, cwd=folder, timeout=300,
                          env={**os.environ, protocol.TEST_DSN: dsn})
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
