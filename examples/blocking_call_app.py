"""A Flask app whose driver cooperates but whose own code blocks the hub at every request.

    gevent-probe run --app blocking_call_app:app --chdir examples --variants psycopg-binary

psycopg 3 waits cooperatively through a pool; each request also calls `audit()`, which
blocks in a call gevent cannot patch: the original `time.sleep`, standing for a C client
library that does its own blocking I/O. For BLOCKING_CALL_MS (15) per request no other
greenlet of the worker runs. The probe's own queries stay fast, so only the runs under load
show it: `hub-blocking`, with this file's line.
"""

from __future__ import annotations

import os

import psycopg  # noqa: F401 - at module level, as most apps do
from flask import Flask, jsonify, request
from gevent.monkey import get_original
from psycopg_pool import ConnectionPool

app = Flask(__name__)
DSN = os.environ.get("DATABASE_URL") or os.environ["GEVENT_PROBE_DSN"]
BLOCK_S = float(os.environ.get("BLOCKING_CALL_MS") or 15) / 1000
_blocking_sleep = get_original("time", "sleep")
_pool: ConnectionPool | None = None


def pool() -> ConnectionPool:
    global _pool
    if _pool is None:  # in the worker, on first use: no connection crosses a fork
        _pool = ConnectionPool(DSN, min_size=2, max_size=20, open=True,
                               kwargs={"autocommit": True})
    return _pool


def audit() -> None:
    _blocking_sleep(BLOCK_S)  # a C call that never yields to the hub


@app.get("/select1")
def select1():
    audit()
    with pool().connection() as conn:
        rows = conn.execute("SELECT g, md5(g::text) FROM generate_series(1, 10) g").fetchall()
    return jsonify(rows=rows)


@app.get("/sleep")
def sleep():
    ms = min(float(request.args.get("ms", "50")), 10_000.0)
    with pool().connection() as conn:
        conn.execute("SELECT pg_sleep(%s)", (ms / 1000.0,))
    return jsonify(slept_ms=ms)
