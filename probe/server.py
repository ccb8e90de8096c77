"""gunicorn with gevent workers around a WSGI app, on 127.0.0.1 and a free port.

The arbiter starts in its own session so that stopping it takes its workers along; workers
dump their final stats to a folder when they exit (apps/gunicorn_conf.py), which is how we
hear from every worker, not just the ones a request happened to reach.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.lifecycle import stop_group
from probe.postgres import free_port

APPS_DIR = Path(__file__).resolve().parent.parent / "apps"
GUNICORN_CONF = APPS_DIR / "gunicorn_conf.py"
DEFAULT_APP = "apps.probe_app:application"
BYO_APP = "apps.byo:application"  # the user's app, with the probe's routes under BYO_PREFIX
BYO_PREFIX = "/_probe"
READY_TIMEOUT_S = 30.0


@dataclass
class Gunicorn:
    app: str
    env: Mapping[str, str]
    stats_dir: Path
    prefix: str = ""  # where the probe's routes live
    workers: int = 1
    worker_connections: int = 1000
    preload: bool = False
    chdir: Path | None = None
    port: int = 0
    proc: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Gunicorn:
        self.port = free_port()
        env = {**os.environ, **self.env,
               "GEVENT_PROBE_PORT": str(self.port),
               "GEVENT_PROBE_WORKERS": str(self.workers),
               "GEVENT_PROBE_WORKER_CONNECTIONS": str(self.worker_connections),
               "GEVENT_PROBE_PRELOAD": "1" if self.preload else "0",
               "GEVENT_PROBE_STATS_DIR": str(self.stats_dir)}
        # The project root must be importable for apps.* and probe.* in the workers.
        root = str(APPS_DIR.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF)]
        if self.chdir:
            argv += ["--chdir", str(self.chdir)]
        argv.append(self.app)
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.stats_dir / "gunicorn.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ProbeError(f"gunicorn exited during start-up: {self.log_tail()}")
            try:
                get(self.url + self.prefix + "/healthz", timeout=1)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise ProbeError(f"gunicorn not ready after {READY_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def worker_pids(self) -> list[int]:
        import psutil

        if self.proc is None:
            return []
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc is not None:
            # SIGTERM: graceful, so each worker's exit hook dumps its stats.
            stop_group(self.proc, signal.SIGTERM, timeout=15)
            self.proc = None
        if getattr(self, "_stderr", None):
            self._stderr.close()

    def final_stats(self) -> list[dict[str, Any]]:
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


def get(url: str, timeout: float = 10) -> bytes:
    with _OPENER.open(url, timeout=timeout) as response:
        return response.read()


def get_json(url: str, timeout: float = 10) -> Any:
    return json.loads(get(url, timeout))
