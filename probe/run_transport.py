"""The run transport: each variant behind real gunicorn gevent workers, under real locust load.

Per variant, in its own process tree: start gunicorn; ask every worker what it really runs
(/_probe/diag) and run the in-process probe inside every worker (/_probe/measure: probe.measure
with connections of its own, exactly as in bench, so the app's pool size and the worker count
cannot move it); then the load phase, where locust measures what users feel and every
worker's heartbeat watches its hub; stop gracefully, and read each worker's final report. A
worker that left none died, and says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from probe import aggregate, availability, protocol
from probe import dsn as dsn_mod
from probe.errors import ProbeError, RunCannotGoOn
from probe.load import LoadStopped, lost_workers, run_locust
from probe.measurement import AppDriver, AppInfo, Deadlock, Measurement
from probe.messages import AgentReport, ProbeReport
from probe.model import Unavailable, from_dict
from probe.postgres import lock_waits
from probe.server import OWN_APP, SAMPLE_APP, Gunicorn
from probe.settings import Settings
from probe.target import DeployedApp
from probe.variants import BY_NAME, Variant


class HttpTransport:
    def __init__(self, settings: Settings, dsn: str, workdir: Path) -> None:
        self.settings = settings
        self.dsn = dsn
        self.workdir = workdir
        self._available: dict[str, Unavailable | None] = {}
        self._count = 0

    def measure(self, variant: Variant,
                phase: Callable[[str], None] = lambda state: None) -> Measurement | Unavailable:
        missing = self._unavailable(variant)
        if missing is not None:
            return missing
        self._count += 1
        workdir = self.workdir / f"{self._count:03d}-{variant.name}"
        workdir.mkdir(parents=True, exist_ok=True)
        server = self._server(variant, workdir)
        s = self.settings
        phase(f"asking {s.target}" if s.target else "starting gunicorn")
        try:
            with server:
                diag, problems = self._diag(server)
                phase(f"probing inside {len(diag)} worker(s)")
                probes = self._probe(server, problems)
                if s.warm_up_s:
                    phase(f"warm-up: {s.warm_up_s:g} s of load, not measured")
                    run_locust(s, server.url, workdir, s.warm_up_s, label="warm-up")
                for pid, reply in server.each_worker(f"/{protocol.RESET}").items():
                    if "failed" in reply:
                        raise ProbeError(f"worker {pid} could not open its connections before "
                                         f"the load: {reply['failed']}")
                phase(f"load: {s.rate:g} requests/s for {s.load_s:g} s" if s.rate else
                      f"load: {s.users} users for {s.load_s:g} s")
                try:
                    outcome = run_locust(s, server.url, workdir,
                                         stop_when=lambda: any(workdir.glob(DEADLOCKED)))
                except LoadStopped:
                    phase("a worker froze: asking PostgreSQL why, then ending it")
                    return self._deadlocked(variant, server, workdir)
                problems += lost_workers(outcome.data, s.load_processes)
                phase("reading the workers' reports" if s.target else "stopping gunicorn")
        except RunCannotGoOn:
            raise
        except ProbeError as ex:
            return aggregate.failed(variant, str(ex))
        agents = [from_dict(AgentReport, r) for r in server.final_reports()]
        if isinstance(server, DeployedApp) and server.unheard:
            problems.append(f"gunicorn worker(s) {', '.join(map(str, server.unheard))} of the "
                            "target never answered: not measured")
        if not probes:
            return aggregate.failed(variant, "; ".join(problems) or
                                  "no gunicorn worker answered the probe")
        return aggregate.from_run(
            connections=s.connection_mode, probes=probes, agents=agents, diag_pids=diag,
            load_data=outcome.data, load_s=outcome.load_s, load_started=outcome.started,
            scenario=str(s.locustfile) if s.locustfile else s.scenario, users=s.users,
            loadgen_processes=s.load_processes, loadgen_core_share=outcome.max_core_share,
            loadgen_saturated=outcome.saturated, problems=problems, target_rps=s.rate)

    def _server(self, variant: Variant, workdir: Path) -> Gunicorn | DeployedApp:
        s = self.settings
        if s.target:
            return DeployedApp(s.target)
        return Gunicorn(app=OWN_APP if s.app else SAMPLE_APP, env=self._env(variant),
                        stats_dir=workdir, workers=s.workers,
                        worker_connections=s.worker_connections, preload=variant.preload,
                        # the user's app imports from --chdir (default: here); ours needs none
                        chdir=(s.chdir or Path.cwd()).resolve() if s.app else None,
                        worker_timeout_s=60 + s.probe_budget_s)

    def _deadlocked(self, variant: Variant, server: Gunicorn | DeployedApp,
                    workdir: Path) -> Measurement:
        """A worker left a deadlock report: what the server's backends wait for, read while
        the worker still holds its locks; then the whole server is killed, not asked."""
        found = from_dict(Deadlock, json.loads(next(workdir.glob(DEADLOCKED)).read_text()))
        found = dataclasses.replace(found, backends=tuple(lock_waits(self.dsn)))
        server.kill()
        return aggregate.deadlocked(variant, found)

    def _unavailable(self, variant: Variant) -> Unavailable | None:
        """A driver that cannot import would only crash gunicorn: ask once per variant."""
        if self.settings.target:  # the app runs what it runs, on its own host
            return None
        if variant.name not in self._available:
            found = availability.check(variant)
            self._available[variant.name] = found if isinstance(found, Unavailable) else None
        return self._available[variant.name]

    def _env(self, variant: Variant) -> dict[str, str]:
        s = self.settings
        own = {protocol.USER_APP: s.app} if s.app else {}
        if s.app and "DATABASE_URL" not in os.environ:  # the common convention, as a URI
            own["DATABASE_URL"] = dsn_mod.as_uri(self.dsn)
        return {**own, **variant.environment(), protocol.VARIANT: variant.name,
                protocol.DSN: self.dsn, protocol.CONNECTIONS: s.connections,
                protocol.POOL: s.pool, protocol.POOL_SIZE: str(s.pool_size),
                protocol.BLOCK_THRESHOLD_MS: str(s.block_threshold_ms),
                protocol.PARTIAL_BLOCK_MS: str(s.partial_block_ms),
                protocol.COMPUTE_MS: str(s.compute_ms),
                protocol.DEADLOCK_AFTER_S: str(s.deadlock_after),
                protocol.WORKLOAD: s.workload}

    def _diag(self, server: Gunicorn | DeployedApp) -> tuple[list[int], list[str]]:
        replies = server.each_worker(f"/{protocol.DIAG}")
        problems = [f"gunicorn worker {pid} could not load the driver: {r['failed']}"
                    for pid, r in replies.items() if "failed" in r]
        return sorted(replies), problems

    def _probe(self, server: Gunicorn | DeployedApp, problems: list[str]) -> list[ProbeReport]:
        s = self.settings
        query = (f"/{protocol.MEASURE}?token={uuid.uuid4().hex}&concurrency={s.concurrency}"
                 f"&sleep_ms={s.sleep_ms:g}&rounds={s.rounds}")
        replies = server.each_worker(query, timeout=60 + s.probe_budget_s)
        reports = []
        for pid, reply in sorted(replies.items()):
            if "failed" in reply:
                problems.append(f"the probe failed in gunicorn worker {pid}: {reply['failed']}")
            else:
                reports.append(from_dict(ProbeReport, reply["report"]))
        return reports


def target_variant(settings: Settings) -> Variant:
    """What the deployed app runs, as its agent says (GEVENT_PROBE_VARIANT in the app's
    environment, else the driver it imported)."""
    assert settings.target is not None
    named = DeployedApp(settings.target).diag().get("variant")
    if named not in BY_NAME:
        raise ProbeError(f"{settings.target} runs variant {named!r}, unknown to this "
                         "gevent-probe: install the same version on both sides")
    return BY_NAME[named]


def check_app(settings: Settings, dsn: str) -> AppInfo | None:
    """`--app module:callable` must import and hold that callable, before any load runs; and
    the drivers it imports then are the ones worth measuring.

    Imported in a throwaway process as a gunicorn gevent worker imports it: gevent patched
    first, with the environment the workers get, so that a failure is one clear line (exit 2)
    instead of every variant failing at start-up. Drivers imported lazily (on a first request)
    are found by the workers themselves.
    """
    if not settings.app:
        return None
    module, _, attr = settings.app.partition(":")
    where = (settings.chdir or Path(".")).resolve()
    code = ("import importlib, json, sys\n"
            "from gevent import monkey\n"
            "monkey.patch_all()\n"
            "from probe.drivers import imported_by_app\n"
            "from probe.model import to_dict\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "try:\n"
            "    target = importlib.import_module(sys.argv[2])\n"
            "except BaseException as ex:\n"
            "    print(f'cannot import module {sys.argv[2]!r}: {type(ex).__name__}: {ex}'"
            ".splitlines()[0]); sys.exit(1)\n"
            "for part in sys.argv[3].split('.'):\n"
            "    if not hasattr(target, part):\n"
            "        print(f'module {sys.argv[2]!r} has no attribute {sys.argv[3]!r}');"
            " sys.exit(1)\n"
            "    target = getattr(target, part)\n"
            "if not callable(target):\n"
            "    print(f'{sys.argv[2]}:{sys.argv[3]} is not callable'); sys.exit(1)\n"
            "print(APP_LINE + json.dumps([to_dict(d) for d in imported_by_app('with the app')]))"
            "\n").replace("APP_LINE", repr(APP_LINE))
    env = {**os.environ, protocol.DSN: dsn, protocol.VARIANT: "psycopg-binary"}
    env.setdefault("DATABASE_URL", dsn_mod.as_uri(dsn))
    try:
        proc = subprocess.run([sys.executable, "-P", "-c", code, str(where), module, attr],
                              capture_output=True, text=True, timeout=60, cwd=where, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ProbeError(f"--app {settings.app}: importing it from {where} took over 60 s")\
            from None
    found = [line for line in proc.stdout.splitlines() if line.startswith(APP_LINE)]
    if proc.returncode != 0 or not found:
        reason = (proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines()
                  or [f"it exited with code {proc.returncode}"])[-1]
        raise ProbeError(f"--app {settings.app}: {reason} (searched {where})")
    drivers = json.loads(found[-1][len(APP_LINE):])
    return AppInfo(target=settings.app, drivers=tuple(from_dict(AppDriver, d) for d in drivers))


APP_LINE = "gevent-probe app drivers: "
DEADLOCKED = "deadlock-*.json"  # what a frozen worker's agent leaves (probe.agent)
