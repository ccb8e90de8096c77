"""The probe inside each gunicorn worker: the run transport's end of the measurement.

gunicorn's hooks (probe/apps/gunicorn_conf.py) start one Agent per worker after the worker has
patched gevent and loaded the app, and dump its report to a file when the worker exits, so we
hear from every worker, not just the ones a request happened to reach. Between the two:
- the heartbeat and watchdog (probe.monitor) watch the hub the whole time;
- every psycopg connection created in the worker, by our routes or by the user's own app,
  gets a timed lock (probe.contention);
- the probe's routes under /_probe/ answer the tool: `diag` (what this worker really runs),
  `measure` (probe.measure with connections of its own, exactly as in bench), `reset`.

Nothing here imports a driver at import time: with the user's own app under `--preload`, an
import of ours in the master would change the answer to the user's question. The driver is
loaded on the first `measure`, in the worker, after gevent patched.

Environment (set by the tool, declared in probe.protocol): VARIANT, DSN, BLOCK_THRESHOLD_MS,
PARTIAL_BLOCK_MS, DEADLOCK_AFTER_S, STATS_DIR, PRELOAD, WATCH, AGENT_TOKEN (the routes answer
only requests that carry it; a deployed app sets it itself: probe.gunicorn_hook).
"""

from __future__ import annotations

import dataclasses
import hmac
import importlib.abc
import importlib.util
import json
import logging
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from probe import connects, contention, drivers, protocol, stats
from probe import dsn as dsn_mod
from probe.measure import MAX_MESSAGES, ProbeJob, first_line, probe, usage_since
from probe.measurement import Deadlock
from probe.messages import AgentReport, LoadReport
from probe.model import to_dict
from probe.monitor import DEADLOCK_AFTER_S, LoopMonitor
from probe.results import write_text
from probe.settings import comma_list
from probe.variants import BY_NAME, Variant, matching

PREFIX = protocol.PROBE_PREFIX
StartResponse = Callable[..., Any]
# The app's own warm-ups (open its pool), run before the load window opens: opening a
# connection (TLS, SCRAM) computes for milliseconds without yielding, which belongs to the
# app's start, not to its steady state under load.
WARM_UPS: list[Callable[[], Any]] = []


class Agent:
    def __init__(self) -> None:
        self.pid = os.getpid()
        # A deployed app (probe.gunicorn_hook) may leave both to us: the driver it imported,
        # and the database it uses by the common convention.
        self.variant = _variant()
        self.dsn = os.environ.get(protocol.DSN) or os.environ.get("DATABASE_URL", "")
        self.partial_block_ms = float(os.environ.get(protocol.PARTIAL_BLOCK_MS) or 2)
        threshold_ms = float(os.environ.get(protocol.BLOCK_THRESHOLD_MS) or 10)
        deadlock_after_s = float(os.environ.get(protocol.DEADLOCK_AFTER_S)
                                 or DEADLOCK_AFTER_S)
        self.monitor = LoopMonitor(threshold_s=threshold_ms / 1000,
                                   deadlock_after_s=deadlock_after_s)
        self.driver: Any = None
        # What the app imported itself, before the probe loads the variant's driver: gunicorn
        # calls us once the app is loaded (under --preload, by the master, before patching).
        when = ("in gunicorn's master, before gevent patched"
                if os.environ.get(protocol.PRELOAD) == "1" else "with the app")
        self.app_drivers = {d.module: d for d in drivers.imported_by_app(when)}
        self._probe_imports: frozenset[str] = frozenset()
        self.app_error: str | None = None
        self.locks: tuple[str, ...] = ()
        logging.getLogger().addHandler(_FirstError(self))
        self.at_exit: list[Callable[[], Any]] = []  # the app's cleanups, after the report
        self._measured: dict[str, dict[str, Any]] = {}  # token -> probe report
        self._importing = False
        # GEVENT_PROBE_WATCH=0 (benchmarks/overhead.py only): the routes answer, nothing is
        # watched, so that the cost of watching can be measured.
        self.watching = os.environ.get(protocol.WATCH, "1") != "0"
        if self.watching:
            self.monitor.start(without=comma_list(os.environ.get(protocol.WATCH_WITHOUT)))
            self.monitor.on_deadlock = self._deadlocked
        _on_driver_import(self)
        self.reset()
        self.monitor.watch_progress(self.progress)

    def reset(self) -> None:
        self.requests: dict[str, int] = {}
        self.in_flight = 0
        self.completed = 0
        self.units: dict[str, int] = {}  # workload units completed, by kind
        self.messages: dict[str, int] = {}  # the driver's errors, by first line
        self.errors: dict[str, int] = {}
        self.first_error: str | None = None
        self.db = stats.new_histogram()  # µs per SELECT 1 call of the sample app
        self.queries = 0
        self.db_errors = 0
        self.busy_ns = 0  # inside driver calls, every route
        self.monitor.reset()
        contention.STATS.reset()
        self._usage = resource.getrusage(resource.RUSAGE_SELF)
        self._since = time.perf_counter()

    # -- what the app reports ------------------------------------------------------------------

    def count(self, route: str) -> None:
        self.requests[route] = self.requests.get(route, 0) + 1
        self.in_flight += 1

    def unit_done(self, kind: str) -> None:
        self.units[kind] = self.units.get(kind, 0) + 1

    def done(self) -> None:
        """A request counted by count() got its answer (or failed)."""
        self.in_flight -= 1
        self.completed += 1

    def progress(self) -> int | None:
        """Answered requests while some are pending, None when none are (for the monitor's
        no-progress watch: an idle worker is not a deadlocked one)."""
        return self.completed if self.in_flight > 0 else None

    def error(self, route: str, ex: BaseException) -> None:
        self.errors[route] = self.errors.get(route, 0) + 1
        self.first_error = self.first_error or first_line(ex)

    def db_call(self, call: Callable[[], Any], timed: bool) -> Any:
        """Run one driver call of the app; `timed` ones (SELECT 1) go into the histogram."""
        start = time.perf_counter_ns()
        try:
            result = call()
        except Exception as ex:
            if timed:
                self.db_errors += 1
                message = first_line(ex)
                if message in self.messages or len(self.messages) < MAX_MESSAGES:
                    self.messages[message] = self.messages.get(message, 0) + 1
            raise
        finally:
            self.busy_ns += time.perf_counter_ns() - start
        if timed:
            self.db.record_value(max(1, (time.perf_counter_ns() - start) // 1000))
            self.queries += 1
        return result

    # -- the probe's routes -------------------------------------------------------------------

    def ensure_driver(self) -> Any:
        """The variant's driver, loaded in this worker on first use (already loaded when the
        sample app imported it, in the worker or, under --preload, in the master)."""
        if self.driver is None:
            before = {m for m in DRIVER_MODULES if m in sys.modules}
            self._importing = True
            try:
                self.driver = drivers.load(self.variant, self.partial_block_ms)
            finally:
                self._importing = False
            self._probe_imports = frozenset(
                m for m in DRIVER_MODULES if m in sys.modules and m not in before)
            # how the drivers' locks are bound, read now, in the hub: a deadlock is reported
            # from the watchdog's thread
            self.locks = tuple(drivers.lock_binding())
        return self.driver

    def driver_imported(self, name: str) -> None:
        """A driver module was just imported: by the app during a request, unless by us."""
        if not self._importing and name not in self.app_drivers:
            for found in drivers.imported_by_app("during requests"):
                if found.module == name:
                    self.app_drivers[name] = found

    def app_failed(self, ex: BaseException) -> None:
        """The app raised (or logged) an exception: keep the first, with where it came from."""
        if self.app_error is None:
            self.app_error = describe_exception(ex)

    def measure(self, token: str, concurrency: int, sleep_ms: float, rounds: int) -> dict[str, Any]:
        if token not in self._measured:
            self.ensure_driver()
            job = ProbeJob(dsn=self.dsn, concurrency=concurrency, sleep_s=sleep_ms / 1000,
                           rounds=rounds)
            self._measured[token] = to_dict(probe(self.driver, job, self.monitor))
        return self._measured[token]

    def diag(self) -> dict[str, Any]:
        return {"pid": self.pid, "variant": self.variant.name, "workers": _siblings(),
                "app_drivers": [to_dict(d) for d in self.app_drivers.values()],
                "runtime": to_dict(self.ensure_driver().runtime())}

    def serve(self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any],
              start_response: StartResponse,
              work: Callable[[], Any] | None = None) -> Iterable[bytes]:
        """One request of the app, counted: the no-progress watch sees it pending until it
        is answered, and the first exception it raised is kept with where it came from."""
        self.count("app")
        try:
            if work is not None:
                work()
            return app(environ, start_response)
        except Exception as ex:  # gunicorn answers 500; the run says why
            self.app_failed(ex)
            raise
        finally:
            self.done()

    def report(self) -> AgentReport:
        cpu_s, voluntary, involuntary = usage_since(self._usage)
        load = LoadReport(
            db_hdr=stats.encode(self.db), queries=self.queries, errors=self.db_errors,
            wall_s=round(time.perf_counter() - self._since, 6), busy_s=round(self.busy_ns / 1e9, 6),
            cpu_s=cpu_s, voluntary_ctx=voluntary, involuntary_ctx=involuntary,
            first_error=self.first_error,
            lock=contention.STATS.report() if "psycopg" in sys.modules else None,
            workload=os.environ.get(protocol.WORKLOAD) or "select1",
            errors_by_message=dict(self.messages), units_by_kind=dict(self.units))
        return AgentReport(pid=self.pid, requests=dict(self.requests), errors=dict(self.errors),
                           monitor=self.monitor.report(), load=load,
                           app_drivers=tuple(self.app_drivers.values()),
                           app_error=self.app_error)

    def _deadlocked(self, found: Deadlock) -> None:
        """From the monitor (its watchdog thread, when the hub itself is stuck): leave the
        report where the tool looks during the load, then wait to be ended."""
        directory = os.environ.get(protocol.STATS_DIR)
        if directory:
            report = dataclasses.replace(found, locks=self.locks)
            write_text(Path(directory) / f"deadlock-{self.pid}.json", json.dumps(to_dict(report)))

    def dump(self) -> str | None:
        """Write the report to $GEVENT_PROBE_STATS_DIR/worker-<pid>.json, atomically."""
        directory = os.environ.get(protocol.STATS_DIR)
        if not directory:
            return None
        path = Path(directory) / f"worker-{self.pid}.json"
        write_text(path, json.dumps(to_dict(self.report())))
        return str(path)

    def routes(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """WSGI for PATH_INFO under /_probe/: only for requests that carry the agent's token
        (compared in constant time); to any other, and without a token, 404 as if nothing
        were there. The tool's own gunicorn gets a token drawn for it (probe.server)."""
        if not authorized(environ):
            return respond(start_response, "404 Not Found", "not found\n")
        route = environ.get("PATH_INFO", "")[len(PREFIX):].strip("/")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if route == protocol.HEALTHZ:
            return respond(start_response, "200 OK", "ok")
        if route == protocol.DIAG:
            try:
                return self._answer(start_response, self.diag())
            except Exception as ex:  # e.g. the driver cannot be imported in this worker
                return self._answer(start_response, {"pid": self.pid, "failed": first_line(ex)})
        if route == protocol.RESET:
            try:
                for warm_up in WARM_UPS:
                    warm_up()
            except Exception as ex:  # e.g. too many connections: the tool says so, not a 500
                return self._answer(start_response, {"pid": self.pid, "failed": first_line(ex)})
            finally:
                self.reset()
            return self._answer(start_response, {"pid": self.pid})
        if route == protocol.MEASURE:
            try:
                report = self.measure(query.get("token", ""), int(query["concurrency"]),
                                      float(query["sleep_ms"]), int(query["rounds"]))
            except Exception as ex:  # the tool gets the reason; the worker keeps serving
                return self._answer(start_response, {"pid": self.pid, "failed": first_line(ex)})
            return self._answer(start_response, {"pid": self.pid, "report": report})
        if route == protocol.REPORT:
            return self._answer(start_response, {"pid": self.pid,
                                                 "report": to_dict(self.report())})
        return respond(start_response, "404 Not Found", "not found\n")


    def _answer(self, start_response: StartResponse, payload: dict[str, Any]) -> Iterable[bytes]:
        """JSON, without the DSN's password anywhere a driver's error may have quoted it."""
        text = json.dumps(payload)
        if self.dsn:
            text = dsn_mod.scrub_in_measured(text, self.dsn)
        return respond(start_response, "200 OK", text, "application/json")


_agent: Agent | None = None


def start() -> Agent:
    """Called by gunicorn's post_worker_init hook, in the worker, after gevent patched."""
    global _agent
    _agent = Agent()
    return _agent


def current() -> Agent:
    """This worker's agent (started on first use when no hook did, e.g. in a test)."""
    if _agent is None or _agent.pid != os.getpid():
        return start()
    return _agent


def dump_if_started() -> None:
    """Called by gunicorn's worker_exit hook: a worker that never started one has nothing."""
    if _agent is not None and _agent.pid == os.getpid():
        _agent.monitor.stop()
        _agent.dump()
        for cleanup in _agent.at_exit:
            try:
                cleanup()
            except Exception:  # the worker is exiting: a failed close must not hide the rest
                continue


class _OnDriverImport(importlib.abc.MetaPathFinder):
    """Tell the agent as soon as a driver is imported, by the probe or lazily by the app (the
    usual #919 shape: a module-level singleton connection created on the first request)."""

    def __init__(self, imported: Callable[[str], None]) -> None:
        self.imported = imported

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in DRIVER_MODULES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_tell(module: Any) -> None:
            exec_module(module)
            sys.modules[name] = module
            self.imported(name)

        spec.loader.exec_module = exec_then_tell  # type: ignore[method-assign]
        return spec


DRIVER_MODULES = ("psycopg", "psycopg2")


def _on_driver_import(agent: Agent) -> None:
    """The drivers already imported, and each one imported later: psycopg's connection lock
    timed (probe.contention) and every connect counted (probe.connects) when the agent
    watches; the app's own imports recorded either way."""
    def imported(name: str | None = None) -> None:
        if agent.watching:
            contention.instrument_psycopg()
            connects.instrument(agent.monitor.tracer)
        if name is not None:
            agent.driver_imported(name)

    imported()
    if not any(isinstance(f, _OnDriverImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _OnDriverImport(imported))


class _FirstError(logging.Handler):
    """The first exception the app logged (Flask, Django and most frameworks log the ones
    they turn into a 500), so that failed requests come with their cause."""

    def __init__(self, agent: Agent) -> None:
        super().__init__(logging.ERROR)
        self.agent = agent

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.agent.app_failed(record.exc_info[1])


_TOKEN_KEY = "HTTP_" + protocol.TOKEN_HEADER.upper().replace("-", "_")  # in a WSGI environ


def authorized(environ: dict[str, Any]) -> bool:
    token = os.environ.get(protocol.AGENT_TOKEN, "")
    given = str(environ.get(_TOKEN_KEY, ""))
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def _variant() -> Variant:
    """GEVENT_PROBE_VARIANT (set by the tool), else what the app imported, else psycopg 3."""
    named = os.environ.get(protocol.VARIANT)
    if named:
        return BY_NAME[named]
    found = drivers.imported_by_app("with the app")
    return matching(found[0]) if found else BY_NAME["psycopg-binary"]


def _siblings() -> list[int]:
    """Every worker of this gunicorn (the arbiter's children), so that the tool knows whom it
    has not heard from yet; just this process outside gunicorn."""
    import psutil

    try:
        return sorted(c.pid for c in psutil.Process(os.getppid()).children())
    except psutil.Error:
        return [os.getpid()]


def describe_exception(ex: BaseException) -> str:
    """'KeyError: 'DATABASE_URL' (File "app.py", line 12, in view)': the innermost frame of
    the app's own code, else the innermost one."""
    frames = traceback.extract_tb(ex.__traceback__)
    own = [f for f in frames if not any(p in f.filename for p in _LIBRARY_PARTS)]
    where = (own or frames)[-1:]
    text = f"{type(ex).__name__}: {ex}".strip().splitlines()[0]
    if where:
        f = where[0]
        text += f' (File "{f.filename}", line {f.lineno}, in {f.name})'
    return text


_LIBRARY_PARTS = ("/site-packages/", "/dist-packages/", "/lib/python3", "/probe/", "<frozen ")


def respond(start_response: StartResponse, status: str, body: str | bytes,
            content_type: str = "text/plain; charset=utf-8") -> Iterable[bytes]:
    data = body.encode() if isinstance(body, str) else body
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]
