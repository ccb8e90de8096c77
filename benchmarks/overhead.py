"""What measuring costs the app: the sample app's throughput with the measurement on and off.

    .venv/bin/python benchmarks/overhead.py [--servers 6] [--rounds 6] [--seconds 3]
        [--env GEVENT_PROBE_...=VALUE] [--against DIR] [--against-env KEY=VALUE]

Two gunicorn gevent workers serve the sample app (psycopg-binary, GET /select1), one with the
measurement on (as `run` starts it: the slice tracer on every greenlet switch, the heartbeat,
the watchdog thread, the timed connection locks), one with it off (GEVENT_PROBE_WATCH=0,
which leaves the agent's routes but none of that). Both live on the same core (taskset; wrk
and PostgreSQL share the others, as a dedicated app server would), and two wrk processes
(Debian's package; locust's Python would take the CPU the workers need) saturate both at
once, a few seconds per round.

Why this shape: this VM's speed drifts by ±15% from one minute to the next, and even bursts
a few seconds apart differ by up to 20%. Loaded at the same time on one core, the two
workers see the same machine at every instant: each one's CPU per request (psutil) is then
comparable (all of its threads: the watch's native one too), and a saturated worker's
throughput is one over it, so the RPS cost is
1 - off/on CPU per request. --servers sets of fresh servers keep what a start changes
(memory layout, hash seeds) in the figure.

What each part costs: --env GEVENT_PROBE_WATCH_WITHOUT=watchdog,heartbeat (probe.monitor's
PARTS: tracer, heartbeat, watchdog) leaves those parts out of the watched worker.

Printed: each round's RPS and CPU per request of both workers, and last the RPS cost (from
the geometric mean of the rounds' CPU-per-request ratios, with a 95% t-interval over them).

--against DIR: is a change cheaper? A third worker, watched, runs another checkout of the
tool (`git worktree add DIR REV`: gunicorn_conf pins its probe/) on the same core at the
same time, and the difference between the two is printed before the cost, with its own
interval. The same code measured minutes apart here gave 5.3% and 7.0%, so two versions
measured in turn cannot be told apart by 1%; side by side they see the same machine at
every instant.
--against-env KEY=VALUE: for that third worker only; with `--against .` it prices one part
of the watch side by side (--against-env GEVENT_PROBE_WATCH_WITHOUT=watchdog: what the
watchdog costs is this checkout's excess over the other's).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psutil
from scipy import stats as scistats

from probe import protocol
from probe.postgres import database
from probe.server import SAMPLE_APP, Gunicorn, get


def together(servers: tuple[Gunicorn, ...], seconds: float, connections: int,
             wrk_prefix: list[str]) -> list[tuple[float, float]]:
    """(RPS, the worker's CPU µs per request) of each server, both saturated at once."""
    workers = [psutil.Process(server.worker_pids()[0]) for server in servers]
    cpu0 = [sum(w.cpu_times()[:2]) for w in workers]
    runs = [subprocess.Popen([*wrk_prefix, "wrk", "-t1", f"-c{connections}",
                              f"-d{seconds:g}s", server.url + "/select1"],
                             stdout=subprocess.PIPE, text=True) for server in servers]
    outs = [run.communicate()[0] for run in runs]
    cpu1 = [sum(w.cpu_times()[:2]) for w in workers]
    found = []
    for out, before, after in zip(outs, cpu0, cpu1, strict=True):
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        found.append((requests / seconds, (after - before) * 1e6 / requests))
    return found


def start(dsn: str, watch: bool, workdir: Path, stack: ExitStack, cpus: set[int] | None,
          wrk_prefix: list[str], extra_env: dict[str, str], home: Path | None = None) -> Gunicorn:
    env = {"GEVENT_PROBE_VARIANT": "psycopg-binary", "GEVENT_PROBE_DSN": dsn, **extra_env,
           "GEVENT_PROBE_WATCH": "1" if watch else "0"}
    server = Gunicorn(app=SAMPLE_APP, env=env, stats_dir=workdir / f"w{time.monotonic_ns()}")
    if home is not None:  # the workers import that checkout's probe (gunicorn_conf pins it)
        server.home = home
    stack.enter_context(server)
    if cpus is not None:
        main = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
        for proc in [main, *main.children(recursive=True)]:
            proc.cpu_affinity(sorted(cpus))
    get(f"{server.url}{protocol.PROBE_PREFIX}/{protocol.RESET}",  # the pool opened, as in a run
        headers=server.headers)
    subprocess.run([*wrk_prefix, "wrk", "-t1", "-c10", "-d1s", server.url + "/select1"],
                   capture_output=True, check=True)  # warm
    return server


def interval(logs: list[float]) -> tuple[float, float, float]:
    mean = statistics.fmean(logs)
    half = (float(scistats.t.ppf(0.975, len(logs) - 1)) * statistics.stdev(logs)
            / math.sqrt(len(logs))) if len(logs) > 1 else 0.0
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=6, help="sets of fresh servers")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per set")
    parser.add_argument("--seconds", type=float, default=3.0, help="per round")
    parser.add_argument("--connections", type=int, default=50, help="per server")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="for both workers, e.g. GEVENT_PROBE_BLOCK_THRESHOLD_MS=100")
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="another checkout, watched, beside this one")
    parser.add_argument("--against-env", action="append", default=[], metavar="KEY=VALUE",
                        help="for the --against worker only")
    args = parser.parse_args()
    if args.against is not None and not (args.against / "probe" / "slices.py").is_file():
        raise SystemExit(f"benchmarks/overhead.py: no checkout of the tool in {args.against}")
    if not shutil.which("wrk"):
        raise SystemExit("benchmarks/overhead.py needs wrk (apt-get install wrk)")
    extra_env = dict(item.split("=", 1) for item in args.env)
    against_env = dict(item.split("=", 1) for item in args.against_env)
    cores = sorted(os.sched_getaffinity(0))
    split = len(cores) >= 2 and shutil.which("taskset")
    worker_cpus, other_cpus = ({cores[-1]}, set(cores[:-1])) if split else (None, None)
    wrk_prefix = ["taskset", "-c", ",".join(map(str, sorted(other_cpus)))] if other_cpus \
        else []
    ratios: list[tuple[float, float]] = []
    versus: list[float] = []  # this checkout's CPU per request over the other's
    t0 = time.perf_counter()
    with database(None) as db, tempfile.TemporaryDirectory() as tmp:
        if other_cpus is not None:
            for proc in psutil.process_iter(["cmdline"]):
                if "postgres" in " ".join(proc.info["cmdline"] or []):
                    proc.cpu_affinity(sorted(other_cpus))
        print(f"{db.describe()}; both workers on CPU {worker_cpus or 'any'}\n")
        other = " other CPU µs/req |" if args.against else ""
        print(f"| set | round | off RPS | on RPS | on / off | off CPU µs/req | on CPU µs/req |"
              f"{other}")
        print("|---|---|---|---|---|---|---|" + ("---|" if args.against else ""))
        for n in range(1, args.servers + 1):
            with ExitStack() as stack:
                off_server = start(db.dsn, False, Path(tmp), stack, worker_cpus, wrk_prefix,
                                   extra_env)
                on_server = start(db.dsn, True, Path(tmp), stack, worker_cpus, wrk_prefix,
                                  extra_env)
                servers = [off_server, on_server]
                if args.against is not None:
                    servers.append(start(db.dsn, True, Path(tmp), stack, worker_cpus,
                                         wrk_prefix, {**extra_env, **against_env},
                                         home=args.against.resolve()))
                for r in range(1, args.rounds + 1):
                    off, on, *others = together(tuple(servers), args.seconds,
                                                args.connections, wrk_prefix)
                    ratios.append((on[0] / off[0], on[1] / off[1]))
                    cell = ""
                    if others:
                        versus.append(on[1] / others[0][1])
                        cell = f" {others[0][1]:.0f} |"
                    print(f"| {n} | {r} | {off[0]:,.0f} | {on[0]:,.0f} | {on[0] / off[0]:.3f} "
                          f"| {off[1]:.0f} | {on[1]:.0f} |{cell}", flush=True)
    cpu = interval([math.log(b) for _, b in ratios])
    print(f"\n{time.perf_counter() - t0:.0f} s in all; {len(ratios)} rounds; on/off CPU per "
          f"request {min(b for _, b in ratios):.3f}-{max(b for _, b in ratios):.3f}, RPS "
          f"{min(a for a, _ in ratios):.3f}-{max(a for a, _ in ratios):.3f} (the core's share)")
    print(f"CPU per request: {100 * (cpu[0] - 1):+.1f}% (95% interval "
          f"{100 * (cpu[1] - 1):+.1f}% to {100 * (cpu[2] - 1):+.1f}%)")
    # Saturated, a worker serves one request per CPU-per-request: RPS scales as its inverse.
    if versus:
        diff = interval([math.log(v) for v in versus])
        print(f"this checkout's CPU per request over {args.against}'s: "
              f"{100 * (diff[0] - 1):+.1f}% (95% interval {100 * (diff[1] - 1):+.1f}% to "
              f"{100 * (diff[2] - 1):+.1f}%)")
    print(f"measurement cost: {100 * (1 - 1 / cpu[0]):.1f}% of RPS (95% interval "
          f"{100 * (1 - 1 / cpu[1]):.1f}% to {100 * (1 - 1 / cpu[2]):.1f}%, over "
          f"{len(ratios)} rounds)")


if __name__ == "__main__":
    main()
