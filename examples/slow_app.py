"""A small WSGI app whose every request waits SLOW_APP_MS cooperatively: an app change to gate.

    gevent-probe gate --mode run --app slow_app:app --chdir examples --variants psycopg-binary \
        --rate 400 --save-baseline baseline.json            # SLOW_APP_MS unset: 0 ms
    SLOW_APP_MS=10 gevent-probe gate --mode run --app slow_app:app --chdir examples \
        --variants psycopg-binary --rate 400 --baseline baseline.json     # regressed, exit 1

It serves the routes of the built-in scenarios (/select1, /sleep?ms=N) through a
psycopg_pool. The extra wait is a gevent.sleep: cooperative, so no hub is blocked and the
verdict stays healthy; only the latency changes, which is what a baseline gate catches. At a
fixed --rate below capacity, latency is the request's own time; under a closed-model load at
saturation it would be the queue's (users / throughput), which a cooperative wait does not
change.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs

import gevent
from psycopg_pool import ConnectionPool

DSN = os.environ.get("DATABASE_URL") or os.environ["GEVENT_PROBE_DSN"]
EXTRA_S = float(os.environ.get("SLOW_APP_MS") or 0) / 1000
_pool: ConnectionPool | None = None


def pool() -> ConnectionPool:
    global _pool
    if _pool is None:
        _pool = ConnectionPool(DSN, min_size=10, max_size=20, open=True,
                               kwargs={"autocommit": True})
    return _pool


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if EXTRA_S:
        gevent.sleep(EXTRA_S)  # the change under test: slower, still cooperative
    with pool().connection() as conn:
        if path == "/sleep":
            ms = float(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["50"])[0])
            conn.execute("SELECT pg_sleep(%s)", (min(ms, 10_000.0) / 1000,))
            body = b"slept"
        else:
            body = str(conn.execute("SELECT 1").fetchone()[0]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
