"""The sample app of `gevent-probe run`: a plain WSGI app under gunicorn `-k gevent` workers.

Routes: GET /select1 and GET /sleep?ms=N, the load locust drives, through the app's own
connections; everything under /_probe/ goes to the probe's agent in this worker.

The driver is imported here, at module level, on purpose: without `--preload` gunicorn imports
this module in each worker after the gevent worker has patched, so psycopg picks its
cooperative wait; with `--preload` the master imports it before any patching, so psycopg
picks the blocking `wait_c` (the `preload` control). Never patch here: the worker does.
Connections are opened lazily, in the worker, so none is ever inherited through fork.

Environment (set by the tool, besides the agent's):
  GEVENT_PROBE_CONNECTIONS  "per-greenlet" (default: a pool) or "shared" (one per worker)
  GEVENT_PROBE_POOL         "probe" (default) or "native" (psycopg_pool / psycopg2.pool)
  GEVENT_PROBE_POOL_SIZE    connections per worker (default 10)
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from probe import agent, drivers, protocol
from probe.variants import BY_NAME
from probe.workloads import WORKLOADS

MAX_SLEEP_MS = 10_000.0
StartResponse = Callable[..., Any]

VARIANT = BY_NAME[os.environ[protocol.VARIANT]]
DSN = os.environ.get(protocol.DSN, "")
CONNECTIONS = os.environ.get(protocol.CONNECTIONS) or "per-greenlet"
POOL_KIND = os.environ.get(protocol.POOL) or "probe"
POOL_SIZE = int(os.environ.get(protocol.POOL_SIZE) or 10)

# The variant's recipe (PSYCOPG_IMPL, PSYCOPG_WAIT_FUNC) must be in place before the import.
os.environ.update(VARIANT.environment())
DRIVER = drivers.load(VARIANT, float(os.environ.get(protocol.PARTIAL_BLOCK_MS) or 2))
if VARIANT.imports_pool:  # the preload-pool variant: psycopg_pool bound where psycopg was
    import psycopg_pool  # noqa: F401

    POOL_KIND = "native"
# --workload: what /work runs (probe.workloads), set up once per worker before the load.
UNIT = WORKLOADS[os.environ.get(protocol.WORKLOAD) or "select1"]
_units = itertools.count()
# The compute control: every /select1 computes this long before its query, never yielding.
WORK = drivers.computation(float(os.environ.get(protocol.COMPUTE_MS) or 15)) \
    if VARIANT.compute else None


class ProbePool:
    """Up to `size` connections of one worker, opened on demand, reused last-in first-out.

    The same for every driver, so that variants differ only by their driver. Requests beyond
    `size` wait for a free connection.
    """

    def __init__(self, size: int) -> None:
        from gevent.lock import BoundedSemaphore
        from gevent.queue import LifoQueue

        self.size = size
        self._slots = BoundedSemaphore(size)
        self._idle: Any = LifoQueue()

    def warm_up(self) -> None:
        """Open every connection now, at once, rather than one by one under load."""
        import gevent

        jobs = [gevent.spawn(DRIVER.connect, DSN) for _ in range(self.size - self._idle.qsize())]
        gevent.joinall(jobs)
        for job in jobs:  # the ones that opened join the pool even when another failed
            if job.successful():
                self._idle.put(job.value)
        failed = next((job.exception for job in jobs if not job.successful()), None)
        if failed is not None:
            raise failed

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        with self._slots:
            conn = self._idle.get_nowait() if self._idle.qsize() else DRIVER.connect(DSN)
            reusable = False
            try:
                yield conn
                reusable = not DRIVER.is_broken(conn)
            except DRIVER.module.Error:
                reusable = not DRIVER.is_broken(conn)
                raise
            finally:  # interrupted mid-query (timeout, shutdown): its state is unknown
                if reusable:
                    self._idle.put(conn)
                else:
                    with contextlib.suppress(Exception):
                        conn.close()


class NativePool:
    """The driver's own pool: psycopg_pool.ConnectionPool or psycopg2's ThreadedConnectionPool."""

    def __init__(self, size: int) -> None:
        self._slots: Any = None
        if VARIANT.driver == "psycopg":
            from psycopg_pool import ConnectionPool

            self._pool: Any = ConnectionPool(DSN, min_size=size, max_size=size, open=True,
                                             kwargs={"autocommit": True}, name="gevent-probe")
            self._pool.wait(timeout=30)  # every connection open before the load
        else:
            from gevent.lock import BoundedSemaphore
            from psycopg2.pool import ThreadedConnectionPool

            # minconn=size: with fewer, putconn closes every connection beyond minconn.
            self._pool = ThreadedConnectionPool(size, size, DSN)
            self._slots = BoundedSemaphore(size)  # it raises instead of waiting when exhausted

    def warm_up(self) -> None:
        pass  # its constructor opened every connection

    def close(self) -> None:
        # Explicitly, at worker exit: psycopg_pool's __del__ at interpreter exit fails under
        # gevent ("greenlet is being finalized") and prints a traceback.
        if self._slots is None:
            self._pool.close(timeout=1.0)
        else:
            self._pool.closeall()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        if self._slots is None:
            with self._pool.connection() as conn:  # discards broken connections itself
                yield conn
            return
        with self._slots:
            conn = self._pool.getconn()
            broken = True
            try:
                conn.autocommit = True
                yield conn
                broken = DRIVER.is_broken(conn)
            except DRIVER.module.Error:
                broken = DRIVER.is_broken(conn)
                raise
            finally:
                self._pool.putconn(conn, close=broken)


class SharedConnection:
    """One connection per worker that every request uses at once: the psycopg #919 shape
    (a "singleton" connection shared by greenlets)."""

    def __init__(self) -> None:
        self._conn: Any = None

    def warm_up(self) -> None:
        with self.connection():
            pass

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        if self._conn is None or DRIVER.is_broken(self._conn):
            self._conn = DRIVER.connect(DSN)
        yield self._conn


_connections: Any = None


def connections() -> Any:
    global _connections
    if _connections is None:
        if CONNECTIONS == "shared":
            _connections = SharedConnection()
        elif POOL_KIND == "native":
            _connections = NativePool(POOL_SIZE)
            agent.current().at_exit.append(_connections.close)
        else:
            _connections = ProbePool(POOL_SIZE)
    return _connections


def _warm_up() -> None:
    connections().warm_up()
    with connections().connection() as conn:  # the workload's tables, once per worker
        UNIT.setup(DRIVER, conn)


agent.WARM_UPS.append(_warm_up)


def _sleep_ms(query: dict[str, list[str]]) -> float | None:
    try:
        ms = float(query["ms"][0])
    except (KeyError, IndexError, ValueError):
        return None
    return min(max(ms, 0.0), MAX_SLEEP_MS) if math.isfinite(ms) else None


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    probe = agent.current()
    path = environ.get("PATH_INFO", "")
    if path.startswith(agent.PREFIX + "/"):
        return probe.routes(environ, start_response)
    route = path.strip("/")
    probe.count(route if route in ROUTES else "not_found")
    try:
        return _route(probe, route, environ, start_response)
    finally:
        probe.done()


application.counts_itself = True  # type: ignore[attr-defined]  # (probe.gunicorn_hook)


ROUTES = ("select1", "sleep", "work")


def _route(probe: agent.Agent, route: str, environ: dict[str, Any],
           start_response: StartResponse) -> Iterable[bytes]:
    if route == "select1":
        if WORK is not None:
            WORK()
        return _db(probe, route, start_response, DRIVER.select1)
    if route == "sleep":
        ms = _sleep_ms(parse_qs(environ.get("QUERY_STRING", "")))
        if ms is None:
            probe.error(route, ValueError("ms must be a number"))
            return agent.respond(start_response, "400 Bad Request", "ms must be a number\n")
        return _db(probe, route, start_response, lambda c: DRIVER.sleep(c, ms / 1000.0))
    if route == "work":
        return _work(probe, start_response)
    return agent.respond(start_response, "404 Not Found", "not found\n")


def _work(probe: agent.Agent, start_response: StartResponse) -> Iterable[bytes]:
    """One unit of --workload (probe.workloads), timed like SELECT 1, counted by kind."""
    number = next(_units)

    def unit() -> str:
        if UNIT.connects:  # a connection of its own, every time
            return UNIT.unit(DRIVER, DSN, number)
        with connections().connection() as conn:
            return UNIT.unit(DRIVER, conn, number)

    try:
        kind = probe.db_call(unit, timed=True)
    except Exception as ex:
        probe.error("work", ex)
        return agent.respond(start_response, "500 Internal Server Error",
                             f"{type(ex).__name__}\n")
    probe.unit_done(kind)
    return agent.respond(start_response, "200 OK", kind)


def _db(probe: agent.Agent, route: str, start_response: StartResponse,
        call: Callable[[Any], Any], timed: bool | None = None) -> Iterable[bytes]:
    try:
        with connections().connection() as conn:
            row = probe.db_call(lambda: call(conn),
                                timed=route == "select1" if timed is None else timed)
    except Exception as ex:  # driver errors, and failures to connect
        probe.error(route, ex)
        return agent.respond(start_response, "500 Internal Server Error",
                             f"{type(ex).__name__}\n")
    return agent.respond(start_response, "200 OK", str(row[0]))
