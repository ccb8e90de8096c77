"""What measuring costs the app: the sample app's throughput with the measurement on and off.

    .venv/bin/python benchmarks/overhead.py [--pairs 10] [--seconds 6] [--connections 50]

One gunicorn gevent worker serves the sample app (psycopg-binary, GET /select1) saturated by
wrk (Debian's package; locust's Python would take the CPU the worker needs). "On" is the tool
as it runs in `run`: the slice tracer on every greenlet switch, the heartbeat, the watchdog
thread, the timed connection locks. "Off" sets GEVENT_PROBE_WATCH=0, which leaves the agent's
routes but none of that. Runs alternate, off then on, and each pair is compared with itself,
so that the machine's drift (this VM's throughput moves by ±15% from one minute to the next)
hits both sides of a pair alike. On a machine with 2 cores or more the worker gets a core of
its own, wrk and PostgreSQL share the others (taskset), as a dedicated app server would.
Printed: each pair's RPS and the worker's CPU per request, and last the RPS cost, 1 minus
the median of the pairs' on/off ratios. One embedded PostgreSQL for everything.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from probe.postgres import database
from probe.server import SAMPLE_APP, Gunicorn, get


def pin(pid: int, cpus: set[int]) -> None:
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        proc.cpu_affinity(list(cpus))


def one_run(dsn: str, watch: bool, seconds: float, connections: int,
            workdir: Path, cpus: tuple[set[int], set[int]] | None) -> tuple[float, float]:
    """(RPS, the worker's CPU µs per request) of one saturated run."""
    env = {"GEVENT_PROBE_VARIANT": "psycopg-binary", "GEVENT_PROBE_DSN": dsn,
           "GEVENT_PROBE_WATCH": "1" if watch else "0"}
    with Gunicorn(app=SAMPLE_APP, env=env, stats_dir=workdir / f"w{time.monotonic_ns()}") \
            as server:
        (worker,) = server.worker_pids()
        if cpus is not None:
            pin(server.proc.pid, cpus[0])  # type: ignore[union-attr]
        get(server.url + "/_probe/reset")  # the pool opened, as before a real load
        wrk = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", server.url + "/select1"]
        prefix = ["taskset", "-c", ",".join(map(str, sorted(cpus[1])))] if cpus else []
        subprocess.run([*prefix, *wrk[:3], "-d1s", wrk[4]], capture_output=True, check=True)
        cpu0 = sum(psutil.Process(worker).cpu_times()[:2])
        out = subprocess.run([*prefix, *wrk], capture_output=True, text=True, check=True).stdout
        cpu1 = sum(psutil.Process(worker).cpu_times()[:2])
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return requests / seconds, (cpu1 - cpu0) * 1e6 / requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("benchmarks/overhead.py needs wrk (apt-get install wrk)")
    cores = sorted(os.sched_getaffinity(0))
    cpus = ({cores[-1]}, set(cores[:-1])) if len(cores) >= 2 and shutil.which("taskset") \
        else None
    pairs: list[tuple[tuple[float, float], tuple[float, float]]] = []
    t0 = time.perf_counter()
    with database(None) as db, tempfile.TemporaryDirectory() as tmp:
        if cpus is not None:
            for proc in psutil.process_iter(["cmdline"]):
                if "postgres" in " ".join(proc.info["cmdline"] or []):
                    proc.cpu_affinity(list(cpus[1]))
        print(f"{db.describe()}; worker on CPU {cpus[0] if cpus else 'any'}\n")
        print("| pair | off RPS | on RPS | on / off | off CPU µs/req | on CPU µs/req |")
        print("|---|---|---|---|---|---|")
        for n in range(1, args.pairs + 1):
            off = one_run(db.dsn, False, args.seconds, args.connections, Path(tmp), cpus)
            on = one_run(db.dsn, True, args.seconds, args.connections, Path(tmp), cpus)
            pairs.append((off, on))
            print(f"| {n} | {off[0]:,.0f} | {on[0]:,.0f} | {on[0] / off[0]:.3f} | "
                  f"{off[1]:.0f} | {on[1]:.0f} |", flush=True)
    rps = sorted(on[0] / off[0] for off, on in pairs)
    cpu = sorted(on[1] / off[1] for off, on in pairs)
    print(f"\n{time.perf_counter() - t0:.0f} s in all; pairs' on/off RPS ratios "
          f"{rps[0]:.3f}-{rps[-1]:.3f}, CPU per request ratios {cpu[0]:.3f}-{cpu[-1]:.3f}")
    print(f"CPU per request: +{100 * (statistics.median(cpu) - 1):.1f}% (median of the pairs)")
    print(f"measurement cost: {100 * (1 - statistics.median(rps)):.1f}% of RPS "
          f"(median of {len(pairs)} pairs)")


if __name__ == "__main__":
    main()
