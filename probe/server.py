"""gunicorn with gevent workers around a WSGI app, on 127.0.0.1 and a free port.

The arbiter starts in its own session, dies with us (PDEATHSIG, even on `kill -9`), and takes
its workers along (they die with it: probe/apps/gunicorn_conf.py). Workers leave their final
report in a folder when they exit, which is how we hear from every worker, not just the ones a
request happened to reach; a worker that leaves none died.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import probe
from probe import protocol
from probe.errors import ProbeError
from probe.lifecycle import die_with_parent, stop_group
from probe.postgres import free_port

GUNICORN_CONF = Path(str(resources.files("probe.apps") / "gunicorn_conf.py"))
SAMPLE_APP = "probe.apps.probe_app:application"
OWN_APP = "probe.apps.byo:application"  # the user's app, with the probe's routes beside it
READY_TIMEOUT_S = 30.0


@dataclass
class Gunicorn:
    app: str
    env: Mapping[str, str]
    stats_dir: Path
    workers: int = 1
    worker_connections: int = 1000
    preload: bool = False
    chdir: Path | None = None
    worker_timeout_s: float = 60.0  # gunicorn kills a worker silent this long (a blocked probe)
    # The checkout or install whose `probe` the workers import (apps/gunicorn_conf.py pins
    # it): this one, except for benchmarks/overhead.py --against.
    home: Path = Path(probe.__file__).resolve().parent.parent
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    # The agent's routes answer only requests that carry it (probe.agent), here as anywhere.
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {protocol.TOKEN_HEADER: self.token}

    def start(self) -> Gunicorn:
        try:
            self._start()
            self._wait_ready()
        except BaseException:  # failed or interrupted start-up: nothing may stay behind
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.port = free_port()
        env = {**os.environ, **self.env,
               protocol.PORT: str(self.port),
               protocol.WORKERS: str(self.workers),
               protocol.WORKER_CONNECTIONS: str(self.worker_connections),
               protocol.PRELOAD: "1" if self.preload else "0",
               protocol.AGENT_TOKEN: self.token,
               protocol.STATS_DIR: str(self.stats_dir),
               protocol.HOME: str(self.home),
               protocol.WORKER_TIMEOUT: f"{self.worker_timeout_s:.0f}"}
        # -P: the folder we run from is not the app's (a checkout's probe/ would shadow the
        # tool's); the sample app runs from its own scratch folder, the user's from --chdir.
        argv = [sys.executable, "-P", "-m", "gunicorn", "-c", str(GUNICORN_CONF),
                "--chdir", str(self.chdir or self.stats_dir)]
        argv.append(self.app)
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        with open(self.stats_dir / "gunicorn.log", "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=die_with_parent)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ProbeError(f"gunicorn exited during start-up: {self.log_tail()}")
            try:
                get(f"{self.url}{protocol.PROBE_PREFIX}/{protocol.HEALTHZ}", timeout=1,
                    headers=self.headers)
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
                continue
            if len(self.worker_pids()) >= self.workers:  # the arbiter forks them one by one
                return
            time.sleep(0.05)
        raise ProbeError(f"gunicorn not ready after {READY_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def worker_pids(self) -> list[int]:
        import psutil

        if self.proc is None:
            return []
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def each_worker(self, path: str, timeout: float = 60) -> dict[int, Any]:
        return each_worker(self.url, path, lambda: set(self.worker_pids()), timeout,
                           self.headers)

    def stop(self) -> None:
        if self.proc is not None:
            # SIGTERM: graceful, so each worker's exit hook leaves its report.
            stop_group(self.proc, signal.SIGTERM, timeout=15)
            self.proc = None

    def kill(self) -> None:
        """Now, with every worker: a frozen worker would not answer SIGTERM anyway."""
        if self.proc is not None:
            stop_group(self.proc, signal.SIGKILL, timeout=5)
            self.proc = None

    def final_reports(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.stats_dir.glob("worker-*.json")):
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return found

    def log_tail(self) -> str:
        try:
            lines = (self.stats_dir / "gunicorn.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        interesting = [line for line in lines if "Error" in line or "error" in line]
        return (interesting or lines or ["no log"])[-1].strip()

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# No proxies: the traffic we send is for 127.0.0.1 only, whatever HTTP_PROXY says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float = 10, headers: Mapping[str, str] | None = None) -> bytes:
    with _OPENER.open(urllib.request.Request(url, headers=dict(headers or {})),
                      timeout=timeout) as response:
        body: bytes = response.read()
        return body


def get_json(url: str, timeout: float = 10, headers: Mapping[str, str] | None = None) -> Any:
    """GET and decode; any failure (refused, reset, timed out, not JSON) is one ProbeError."""
    try:
        return json.loads(get(url, timeout, headers))
    except (OSError, ValueError, http.client.HTTPException) as ex:
        raise ProbeError(f"no answer from {url.split('//', 1)[-1]}: "
                         f"{type(ex).__name__}: {ex}") from None


def each_worker(url: str, path: str, wanted: Callable[[], set[int]], timeout: float = 60,
                headers: Mapping[str, str] | None = None) -> dict[int, Any]:
    """GET the agent's `path` (protocol.PROBE_PREFIX + path) until every worker answered
    once; gunicorn picks the worker of each connection, not us, so we go on until all pids
    `wanted()` names have been seen (a worker still booting answers later), for
    READY_TIMEOUT_S at most. Each GET is a new connection (urllib closes it)."""
    seen: dict[int, Any] = {}
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        reply = get_json(url + protocol.PROBE_PREFIX + path, timeout=timeout, headers=headers)
        if reply["pid"] in seen:
            time.sleep(0.01)
        seen.setdefault(reply["pid"], reply)
        pids = wanted()
        if (pids and pids <= set(seen)) or time.monotonic() > deadline:
            return seen
