"""locust, headless and bounded, against the app (ours on 127.0.0.1, or --target); its CPU is
watched. Its processes are this host's (--locust-processes) or, with --expect-workers,
`gevent-probe load-worker`s on other hosts that join its master (probe.load_worker).

locust rounds response times (whole ms under 100 ms), so every response time also goes into
our own HdrHistograms through locust's `events.request` hook (probe/locustfiles/hdr.py, which
we load before the scenario), merged exactly across locust processes and written to a JSON
file when the test stops. We watch the load generator's CPU ourselves: a generator near a
full core measures itself, not the app.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from probe import protocol, thresholds
from probe.errors import ProbeError, RunCannotGoOn
from probe.lifecycle import die_with_parent, stop_group
from probe.settings import Settings

DEFAULT_MASTER_PORT = 5557  # locust's

STOP_SLACK_S = 30.0  # locust start-up and shutdown beyond the load itself


@dataclass(frozen=True)
class LoadOutcome:
    data: dict[str, Any]  # the hdr.py JSON: histograms, requests, failures, timeline, locust's
    load_s: float  # the -t duration
    cpu_s_per_process: tuple[float, ...]  # each load-generating process's CPU during the test
    started: float  # Unix time the load began

    @property
    def max_core_share(self) -> float:
        return max(self.cpu_s_per_process, default=0.0) / self.load_s if self.load_s else 0.0

    @property
    def saturated(self) -> bool:
        return self.max_core_share >= thresholds.LOADGEN_SATURATION


@functools.cache
def locustfiles() -> Path:
    """The scenarios' folder, as installed (probe.locustfiles; in a checkout, locustfiles/
    ships under that name only once built): looked up when a load starts, not at import."""
    return Path(str(resources.files("probe.locustfiles")))


def locustfile_for(settings: Settings) -> Path:
    if settings.locustfile:
        return settings.locustfile.resolve()
    if settings.rate:
        return locustfiles() / "rate.py"  # the scenario's routes, on a fixed schedule
    if settings.workload != "select1":
        return locustfiles() / "work.py"  # every user on /work: one unit of the workload
    return locustfiles() / f"{settings.scenario}.py"


class LoadStopped(Exception):
    """`stop_when` said so (a deadlocked worker): locust was stopped before its end."""


def run_locust(settings: Settings, host: str, workdir: Path, duration_s: float | None = None,
               label: str = "load", stop_when: Callable[[], bool] | None = None) -> LoadOutcome:
    """One headless locust run of `duration_s` (default: the settings' load); `label` names
    its files in `workdir`, so that a warm-up and the measured load keep theirs apart.
    `stop_when` is asked ten times a second: True stops locust and raises LoadStopped."""
    out = workdir / f"locust-{label}.json"
    duration = duration_s or settings.load_s or 10.0
    files = f"{locustfiles() / 'hdr.py'},{locustfile_for(settings)}"
    processes = settings.load_processes
    # Open model: one scheduler per locust process, all started at once.
    users, spawn = ((processes, processes) if settings.rate
                    else (settings.users, settings.spawn_rate))
    argv = [sys.executable, "-m", "locust", "-f", files, "--headless",
            "-u", str(users), "-r", f"{spawn:g}",
            "-t", f"{duration:g}s", "-H", host, "--only-summary",
            "--stop-timeout", "2", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    if settings.expect_workers:  # workers on other hosts: gevent-probe load-worker
        argv += ["--master", "--expect-workers", str(settings.expect_workers),
                 "--expect-workers-max-wait", f"{settings.expect_workers_max_wait:g}"]
    elif processes > 1:
        argv += ["--processes", str(processes)]
    if settings.expect_workers or processes > 1:
        bind_host, bind_port = master_bind(settings.locust_master_bind)
        argv += ["--master-bind-host", bind_host, "--master-bind-port", str(bind_port)]
    slow_share = settings.slow_share if settings.scenario == "mixed" else 0.0
    scenario = {protocol.SLOW_SHARE: str(slow_share),
                protocol.SLOW_MS: str(settings.slow_ms),
                protocol.RATE: str(settings.rate or ""),
                protocol.SCHEDULERS: str(processes),
                protocol.DURATION_S: f"{duration:g}",
                protocol.MAX_IN_FLIGHT: str(settings.users),
                protocol.MAIN_ROUTE: "work" if settings.workload != "select1" else "select1"}
    # In the environment for this host's processes; as an option for workers elsewhere
    # (locust forwards it with the test: locustfiles/hdr.py).
    argv += [protocol.LOAD_OPTION, json.dumps(scenario)]
    env = {**os.environ, protocol.LOAD_OUT: str(out), **scenario}
    started = time.time()
    with open(workdir / f"locust-{label}.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=workdir,
                                preexec_fn=die_with_parent)
        try:
            # the master waits for its remote workers before the load begins
            waits = settings.expect_workers_max_wait if settings.expect_workers else 0.0
            _wait(proc, time.perf_counter() + waits + duration + STOP_SLACK_S, stop_when)
        finally:
            stop_group(proc, timeout=5)
    if not out.is_file():
        if settings.expect_workers:
            _short_of_workers(settings, out)
        tail = (workdir / f"locust-{label}.log").read_text(errors="replace").strip().splitlines()
        raise ProbeError(f"locust produced no results: {tail[-1] if tail else 'no output'}")
    data = json.loads(out.read_text())
    cpu = tuple(data.get("load_cpu_s", {}).values())  # from inside, since the test began
    return LoadOutcome(data, duration, cpu, started)


def lost_workers(data: dict[str, Any], expected: int) -> list[str]:
    """What went missing of a distributed load (locustfiles/hdr.py's view from the master):
    a worker whose last report was not its final one, or that stopped its heartbeats, was
    lost mid-test; fewer workers than expected never sent anything. Either way the app got
    less load than asked, so the run is marked (the measurement says why)."""
    if data.get("mode") != "master":
        return []
    workers: dict[str, dict[str, Any]] = data.get("load_workers") or {}
    lost = sorted({w for w, seen in workers.items() if not seen.get("final")}
                  | set(data.get("workers_missing") or ()))
    problems = []
    for name in lost:
        seen = workers.get(name, {})
        problems.append(f"load worker {name} was lost during the load (its last report had "
                        f"{seen.get('sent', 0)} requests sent; its final one never came): "
                        "the app got less load than asked; run again")
    if len(workers) < expected:
        problems.append(f"only {len(workers)} of {expected} load workers sent results")
    return problems


def master_bind(text: str | None) -> tuple[str, int]:
    """--locust-master-bind HOST[:PORT] (default 127.0.0.1, port 5557 as locust's)."""
    host, _, port = (text or "127.0.0.1").rpartition(":")
    if not host:  # "HOST" without a port
        return port, DEFAULT_MASTER_PORT
    return host, int(port)


def _short_of_workers(settings: Settings, out: Path) -> None:
    """The master gave up waiting: say how many load workers came, in one line."""
    try:
        joined = len(json.loads(out.with_name(out.name + protocol.JOINED).read_text()))
    except (OSError, ValueError):
        joined = 0
    host, port = master_bind(settings.locust_master_bind)
    raise RunCannotGoOn(f"only {joined} of {settings.expect_workers} load workers joined the "
                     f"locust master on {host}:{port} within "
                     f"{settings.expect_workers_max_wait:g} s; start them with `gevent-probe "
                     f"load-worker --master {host}:{port}` on the load hosts")


def _wait(proc: subprocess.Popen[bytes], deadline: float,
          stop_when: Callable[[], bool] | None) -> None:
    """locust stops by itself after -t; past the deadline it is killed (by our caller)."""
    while proc.poll() is None:
        if time.perf_counter() > deadline:
            raise ProbeError("locust did not stop by itself in time; it was killed")
        if stop_when is not None and stop_when():
            raise LoadStopped
        time.sleep(0.1)
