"""locust, headless and bounded, against the app on 127.0.0.1; its CPU is watched.

locust rounds response times (whole ms under 100 ms), so every response time also goes into
our own HdrHistograms through locust's event hooks (locustfiles/hdr.py), merged exactly
across locust processes and written to a JSON file when the test stops. We watch the
load generator's CPU ourselves: a generator near a full core measures itself, not the app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.lifecycle import stop_group

LOCUSTFILES = Path(__file__).resolve().parent.parent / "locustfiles"
SCENARIOS = ("mixed", "select1")


@dataclass(frozen=True)
class LoadSettings:
    users: int = 50
    spawn_rate: float = 50.0
    duration_s: float = 10.0
    scenario: str = "mixed"
    locustfile: Path | None = None
    processes: int = 1
    master_bind: str | None = None  # host:port for workers on other machines
    slow_share: float = 0.1
    slow_ms: int = 50


@dataclass(frozen=True)
class LoadOutcome:
    data: dict[str, Any]  # the hdr.py JSON: histograms, requests, failures, locust_stats
    load_s: float  # the -t duration: start-up CPU counts against it, erring towards "saturated"
    cpu_s_per_process: tuple[float, ...]  # each locust process's CPU seconds

    @property
    def max_core_share(self) -> float:
        return max(self.cpu_s_per_process, default=0.0) / self.load_s if self.load_s else 0.0

    @property
    def saturated(self) -> bool:
        from probe.detect import LOADGEN_SATURATION

        return self.max_core_share >= LOADGEN_SATURATION


def locustfile_for(settings: LoadSettings) -> Path:
    if settings.locustfile:
        if not settings.locustfile.is_file():
            raise ProbeError(f"locustfile {settings.locustfile} not found")
        return settings.locustfile
    if settings.scenario not in SCENARIOS:
        raise ProbeError(f"unknown scenario {settings.scenario!r}; known: {', '.join(SCENARIOS)}")
    return LOCUSTFILES / f"{settings.scenario}.py"


def run_locust(settings: LoadSettings, host: str, workdir: Path) -> LoadOutcome:
    out = workdir / "locust-hdr.json"
    argv = [sys.executable, "-m", "locust", "-f", str(locustfile_for(settings)), "--headless",
            "-u", str(settings.users), "-r", str(settings.spawn_rate),
            "-t", f"{settings.duration_s:g}s", "-H", host, "--only-summary",
            "--stop-timeout", "2", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    if settings.processes > 1:
        argv += ["--processes", str(settings.processes)]
        if settings.master_bind:
            bind_host, _, bind_port = settings.master_bind.rpartition(":")
            argv += ["--master-bind-host", bind_host or "127.0.0.1"]
            if bind_port:
                argv += ["--master-bind-port", bind_port]
        else:
            argv += ["--master-bind-host", "127.0.0.1"]
    env = {**os.environ, "GEVENT_PROBE_LOAD_OUT": str(out),
           "GEVENT_PROBE_SLOW_SHARE": str(settings.slow_share),
           "GEVENT_PROBE_SLOW_MS": str(settings.slow_ms)}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(LOCUSTFILES.parent), env.get("PYTHONPATH")) if p)
    log = open(workdir / "locust.log", "wb")  # noqa: SIM115
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=workdir)
    try:
        cpu = _watch_cpu(proc, deadline=start + settings.duration_s + 30)
    finally:
        stop_group(proc, timeout=5)
        log.close()
    if not out.is_file():
        tail = (workdir / "locust.log").read_text(errors="replace").strip().splitlines()
        raise ProbeError(f"locust produced no results: {tail[-1] if tail else 'no output'}")
    return LoadOutcome(json.loads(out.read_text()), settings.duration_s, cpu)


def _watch_cpu(proc: subprocess.Popen, deadline: float) -> tuple[float, ...]:
    """Poll the locust process tree's CPU until it exits; the last sample per pid counts."""
    import psutil

    last: dict[int, float] = {}
    while proc.poll() is None:
        if time.perf_counter() > deadline:
            raise ProbeError("locust did not stop by itself in time; it was killed")
        try:
            root = psutil.Process(proc.pid)
            for p in (root, *root.children(recursive=True)):
                times = p.cpu_times()
                last[p.pid] = times.user + times.system
        except psutil.Error:
            pass
        time.sleep(0.25)
    if len(last) > 1:
        last.pop(proc.pid, None)  # the master of --processes only aggregates
    return tuple(last.values())
