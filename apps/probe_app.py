"""The system-mode target: a plain WSGI app served by gunicorn `-k gevent` workers.

The driver is imported here, at module level, on purpose: without `--preload` gunicorn imports
this module in each worker after the gevent worker has patched, so psycopg picks its
cooperative wait; with `--preload` the master imports it before any patching, so psycopg
picks the blocking `wait_c` (the `preload` control). Never patch here: the worker does.

Everything a worker measures (request counts, DB-call latency, heartbeat lag, hub stalls,
CPU) is created lazily on its first request, in the worker process, so nothing measured or
connected is ever inherited through fork.

Environment:
  GEVENT_PROBE_VARIANT             variant name (probe.variants.BY_NAME), required
  GEVENT_PROBE_DSN                 PostgreSQL DSN, required for the DB routes
  GEVENT_PROBE_POOL                "probe" (default) or "native"
  GEVENT_PROBE_POOL_SIZE           connections per worker (default 10)
  GEVENT_PROBE_BLOCK_THRESHOLD_MS  hub stall threshold of the watchdog (default 10)
  GEVENT_PROBE_STATS_DIR           where a worker writes worker-<pid>.json when it exits
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from probe import drivers, stats
from probe.model import to_dict
from probe.variants import BY_NAME, Variant

POOL_KINDS = ("probe", "native")
DB_ROUTES = ("select1", "sleep")
MAX_SLEEP_MS = 10_000.0

StartResponse = Callable[..., Any]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise RuntimeError(f"{name} must be an integer, got {raw!r}") from None


def _variant() -> Variant:
    name = os.environ.get("GEVENT_PROBE_VARIANT", "")
    variant = BY_NAME.get(name)
    if variant is None:
        raise RuntimeError(f"GEVENT_PROBE_VARIANT={name!r} is not one of {', '.join(BY_NAME)}")
    return variant


VARIANT = _variant()
DSN = os.environ.get("GEVENT_PROBE_DSN", "")
POOL_KIND = os.environ.get("GEVENT_PROBE_POOL", "probe") or "probe"
if POOL_KIND not in POOL_KINDS:
    raise RuntimeError(f"GEVENT_PROBE_POOL must be one of {POOL_KINDS}, got {POOL_KIND!r}")
POOL_SIZE = _env_int("GEVENT_PROBE_POOL_SIZE", 10)
if POOL_SIZE < 1:
    raise RuntimeError("GEVENT_PROBE_POOL_SIZE must be at least 1")
BLOCK_THRESHOLD_MS = float(os.environ.get("GEVENT_PROBE_BLOCK_THRESHOLD_MS") or 10)

# The variant's recipe (PSYCOPG_IMPL, PSYCOPG_WAIT_FUNC) must be in place before the import.
os.environ.update(VARIANT.environment())
DRIVER = drivers.load(VARIANT)
IMPORT_PID = os.getpid()  # differs from the worker's pid when gunicorn preloaded the app


class ProbePool:
    """Up to `size` connections of one worker, opened on demand, reused last-in first-out.

    The same for every driver, so that variants differ only by their driver. Requests beyond
    `size` wait for a free connection (time recorded as pool wait by the caller).
    """

    def __init__(self, driver: drivers.Driver, dsn: str, size: int) -> None:
        from gevent.lock import BoundedSemaphore
        from gevent.queue import LifoQueue

        self.driver, self.dsn, self.size = driver, dsn, size
        self.opened = 0
        self.discarded = 0
        self._slots = BoundedSemaphore(size)
        self._idle: Any = LifoQueue()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        self._slots.acquire()
        try:
            conn = self._idle.get_nowait() if self._idle.qsize() else None
            if conn is None:
                conn = self.driver.connect(self.dsn)
                self.opened += 1
            try:
                yield conn
            except self.driver.module.Error:
                self._give_back(conn, reusable=not self.driver.is_broken(conn))
                raise
            except BaseException:
                # Interrupted mid-query (timeout, worker shutdown): its state is unknown.
                self._give_back(conn, reusable=False)
                raise
            self._give_back(conn, reusable=not self.driver.is_broken(conn))
        finally:
            self._slots.release()

    def close(self) -> None:
        while self._idle.qsize():
            with contextlib.suppress(Exception):
                self._idle.get_nowait().close()

    def _give_back(self, conn: Any, reusable: bool) -> None:
        if reusable:
            self._idle.put(conn)
            return
        self.discarded += 1
        with contextlib.suppress(Exception):
            conn.close()


class NativePool:
    """The driver's own pool: psycopg_pool.ConnectionPool or psycopg2's ThreadedConnectionPool."""

    def __init__(self, driver: drivers.Driver, dsn: str, size: int) -> None:
        self.driver, self.size = driver, size
        self.opened = 0  # psycopg_pool opens and replaces connections on its own: not tracked
        self.discarded = 0
        if driver.variant.driver == "psycopg":
            from psycopg_pool import ConnectionPool

            self._pool: Any = ConnectionPool(dsn, min_size=size, max_size=size, open=True,
                                             kwargs={"autocommit": True}, name="gevent-probe")
            self._slots: Any = None
        else:
            from gevent.lock import BoundedSemaphore
            from psycopg2.pool import ThreadedConnectionPool

            # minconn=size: with fewer, putconn closes every connection beyond minconn, so the
            # pool would reconnect on almost every request.
            self._pool = ThreadedConnectionPool(size, size, dsn)
            self.opened = size
            # ThreadedConnectionPool raises instead of waiting when exhausted.
            self._slots = BoundedSemaphore(size)

    def close(self) -> None:
        # Explicitly: psycopg_pool's __del__ at interpreter exit fails under gevent
        # ("greenlet is being finalized") and prints a traceback.
        if self._slots is None:
            self._pool.close(timeout=1.0)
        else:
            self._pool.closeall()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        if self._slots is None:
            with self._pool.connection() as conn:  # discards broken connections itself
                try:
                    yield conn
                finally:
                    self.discarded += self.driver.is_broken(conn)
            return
        self._slots.acquire()
        try:
            conn = self._pool.getconn()
            broken = True
            try:
                conn.autocommit = True
                yield conn
                broken = self.driver.is_broken(conn)
            except self.driver.module.Error:
                broken = self.driver.is_broken(conn)
                raise
            finally:
                self.discarded += broken
                self._pool.putconn(conn, close=broken)
        finally:
            self._slots.release()


class WorkerState:
    """Everything one gunicorn worker measures; built on its first request, in that worker."""

    def __init__(self, serving: bool = True) -> None:
        self.pid = os.getpid()
        self.pool: ProbePool | NativePool | None = None
        self._pool_lock: Any = None
        self.monitor: Any = None
        if serving:  # an idle worker's final report must not start threads
            from probe.monitor import LoopMonitor

            self.monitor = LoopMonitor(threshold_s=BLOCK_THRESHOLD_MS / 1000.0)
            self.monitor.start()
        self.reset()

    def reset(self) -> None:
        self.requests: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.first_error: str | None = None
        self.db_latency = {route: stats.new_histogram() for route in DB_ROUTES}
        self.pool_wait = stats.new_histogram()
        if self.monitor is not None:
            self.monitor.reset()
        self.since = time.perf_counter()
        self.usage = resource.getrusage(resource.RUSAGE_SELF)

    def count(self, route: str) -> None:
        self.requests[route] = self.requests.get(route, 0) + 1

    def error(self, route: str, ex: BaseException) -> None:
        self.errors[route] = self.errors.get(route, 0) + 1
        if self.first_error is None:
            self.first_error = f"{type(ex).__name__}: {ex}".strip().splitlines()[0]

    def db_call(self, route: str, call: Callable[[Any], Any]) -> Any:
        pool = self.pool or self._open_pool()
        t0 = time.perf_counter_ns()
        with pool.connection() as conn:
            t1 = time.perf_counter_ns()
            self.pool_wait.record_value((t1 - t0) // 1000)
            result = call(conn)
            self.db_latency[route].record_value((time.perf_counter_ns() - t1) // 1000)
        return result

    def _open_pool(self) -> ProbePool | NativePool:
        # On the first DB request, so /healthz and /diag never connect. Under a lock: a native
        # psycopg2 pool connects in its constructor, and may yield to other requests meanwhile.
        from gevent.lock import Semaphore

        if self._pool_lock is None:
            self._pool_lock = Semaphore()
        with self._pool_lock:
            if self.pool is None:
                pool_class = ProbePool if POOL_KIND == "probe" else NativePool
                self.pool = pool_class(DRIVER, DSN, POOL_SIZE)
            return self.pool

    def snapshot(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        user_s = usage.ru_utime - self.usage.ru_utime
        system_s = usage.ru_stime - self.usage.ru_stime
        monitor = self.monitor
        return {
            "pid": self.pid,
            "variant": VARIANT.name,
            "pool": POOL_KIND,
            "pool_size": POOL_SIZE,
            "connections_opened": self.pool.opened if self.pool else 0,
            "connections_discarded": self.pool.discarded if self.pool else 0,
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "first_error": self.first_error,
            "db_latency_hdr": {r: stats.encode(h) for r, h in self.db_latency.items()},
            "pool_wait_hdr": stats.encode(self.pool_wait),
            "lag_hdr": stats.encode(monitor.lag if monitor else stats.new_histogram()),
            "stall_events": monitor.events if monitor else 0,
            "stall_first_frames": list(monitor.first_frames) if monitor else [],
            "block_threshold_ms": BLOCK_THRESHOLD_MS,
            "wall_s": round(time.perf_counter() - self.since, 6),
            "cpu_s": round(user_s + system_s, 6),
            "user_s": round(user_s, 6),
            "system_s": round(system_s, 6),
            "voluntary_ctx": usage.ru_nvcsw - self.usage.ru_nvcsw,
            "involuntary_ctx": usage.ru_nivcsw - self.usage.ru_nivcsw,
        }


_state: WorkerState | None = None


def worker_state() -> WorkerState:
    """This process's state, created on first use; never one inherited through fork."""
    global _state
    if _state is None or _state.pid != os.getpid():
        _state = WorkerState()
    return _state


def dump_stats() -> str | None:
    """Write this worker's final stats to $GEVENT_PROBE_STATS_DIR/worker-<pid>.json.

    Called from gunicorn's worker_exit hook. A worker that served nothing writes zeros, so
    the reader can count workers. Returns the path written, or None when the dir is unset.
    """
    directory = os.environ.get("GEVENT_PROBE_STATS_DIR")
    if not directory:
        return None
    state = _state if _state is not None and _state.pid == os.getpid() else None
    data = (state or WorkerState(serving=False)).snapshot()
    path = os.path.join(directory, f"worker-{os.getpid()}.json")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)  # readers never see half a file
    return path


def on_worker_exit() -> None:
    """gunicorn's worker_exit hook, in the exiting worker: final stats, then close the pool."""
    try:
        dump_stats()
    finally:
        state = _state
        if state is not None and state.pid == os.getpid() and state.pool is not None:
            state.pool.close()


def diag() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "import_pid": IMPORT_PID,
        "preloaded": os.getpid() != IMPORT_PID,
        "variant": VARIANT.name,
        "pool": POOL_KIND,
        "pool_size": POOL_SIZE,
        "block_threshold_ms": BLOCK_THRESHOLD_MS,
        "runtime": to_dict(DRIVER.runtime()),
    }


def _respond(start_response: StartResponse, status: str, body: str | bytes,
             content_type: str = "text/plain; charset=utf-8") -> Iterable[bytes]:
    data = body.encode() if isinstance(body, str) else body
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def _json(start_response: StartResponse, payload: dict[str, Any]) -> Iterable[bytes]:
    return _respond(start_response, "200 OK", json.dumps(payload), "application/json")


def _sleep_ms(query: dict[str, list[str]]) -> float | None:
    try:
        ms = float(query["ms"][0])
    except (KeyError, IndexError, ValueError):
        return None
    return min(max(ms, 0.0), MAX_SLEEP_MS) if math.isfinite(ms) else None


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    state = worker_state()
    path = environ.get("PATH_INFO", "")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    route = path.strip("/")
    if route == "healthz":
        state.count(route)
        return _respond(start_response, "200 OK", "ok")
    if route == "diag":
        state.count(route)
        return _json(start_response, diag())
    if route == "stats":
        state.count(route)
        payload = state.snapshot()
        if query.get("reset", ["0"])[0] not in ("", "0"):
            state.reset()
        return _json(start_response, payload)
    if route == "select1":
        state.count(route)
        return _db(state, route, start_response, DRIVER.select1)
    if route == "sleep":
        state.count(route)
        ms = _sleep_ms(query)
        if ms is None:
            state.error(route, ValueError("ms must be a number"))
            return _respond(start_response, "400 Bad Request", "ms must be a number\n")
        return _db(state, route, start_response, lambda c: DRIVER.sleep(c, ms / 1000.0),
                   body=f"{ms:g}")
    state.count("not_found")
    return _respond(start_response, "404 Not Found", "not found\n")


def _db(state: WorkerState, route: str, start_response: StartResponse,
        call: Callable[[Any], Any], body: str | None = None) -> Iterable[bytes]:
    if not DSN:
        state.error(route, RuntimeError("GEVENT_PROBE_DSN is not set"))
        return _respond(start_response, "500 Internal Server Error", "no DSN\n")
    try:
        row = state.db_call(route, call)
    except Exception as ex:  # driver errors, and failures to connect
        state.error(route, ex)
        return _respond(start_response, "500 Internal Server Error", f"{type(ex).__name__}\n")
    return _respond(start_response, "200 OK", body if body is not None else str(row[0]))
