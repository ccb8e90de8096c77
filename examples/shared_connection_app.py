"""The psycopg #919 shape in a WSGI app: one "singleton" connection that every request uses.

    gevent-probe run --app shared_connection_app:app --chdir examples --variants psycopg-binary

Greenlets (requests) queue on the connection's lock, and gevent's lock is not fair: under
load, some requests wait far longer than the query takes. The probe times that lock inside
the worker and calls it `contention`; the fix is a pool (see flask_app.py).
"""

import os

import psycopg

_conn: psycopg.Connection | None = None


def connection() -> psycopg.Connection:
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ["GEVENT_PROBE_DSN"], autocommit=True)
    return _conn


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/sleep":
        connection().execute("SELECT pg_sleep(0.05)")
    else:
        connection().execute("SELECT 1")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
