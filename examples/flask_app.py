"""A small Flask app to show `gevent-probe run --app`: it uses psycopg through a pool.

    gevent-probe run --app flask_app:app --chdir examples --variants psycopg-binary,preload

psycopg is imported at module level, as most apps do: fine under gunicorn's gevent worker,
the `--preload` trap otherwise (the `preload` variant shows it). The pool is created on first
use, in the worker, so that no connection is inherited through fork. (Connecting per request
instead costs a SCRAM handshake each time, which holds the gevent hub: the probe flags it.)
"""

import os

import psycopg  # noqa: F401 - at module level on purpose (see above)
from flask import Flask, request
from psycopg_pool import ConnectionPool

app = Flask(__name__)
DSN = os.environ["DATABASE_URL"]  # the probe hands its database to the app
_pool: ConnectionPool | None = None


def pool() -> ConnectionPool:
    global _pool
    if _pool is None:
        _pool = ConnectionPool(DSN, min_size=4, max_size=20, kwargs={"autocommit": True},
                               open=True)
    return _pool


@app.get("/select1")
def select1() -> str:
    with pool().connection() as conn:
        return str(conn.execute("SELECT 1").fetchone()[0])


@app.get("/sleep")
def sleep() -> str:
    ms = min(float(request.args.get("ms", "50")), 10_000.0)
    with pool().connection() as conn:
        conn.execute("SELECT pg_sleep(%s)", (ms / 1000.0,))
    return f"{ms:g}"

