"""A shop API in Flask: a pool smaller than the number of users, a few rows per response.

    gevent-probe run --app shop_app:app --chdir examples --locustfile examples/app_locustfile.py

psycopg 3 is imported at module level (after gunicorn's gevent worker patched: cooperative) and
used through `psycopg_pool.ConnectionPool(max_size=10)`: with 50 users, requests queue for a
connection, as they do in many production apps. Every wait is cooperative; under load the
worker saturates (it is busy all the time in short slices), which is capacity, not blocking.
"""

from __future__ import annotations

import os

import psycopg  # noqa: F401 - at module level, as most apps do
from catalog_schema import ensure_schema
from flask import Flask, jsonify, request
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

app = Flask(__name__)
DSN = os.environ.get("DATABASE_URL") or os.environ["GEVENT_PROBE_DSN"]
POOL_SIZE = int(os.environ.get("SHOP_POOL_SIZE") or 10)
_pool: ConnectionPool | None = None


def pool() -> ConnectionPool:
    global _pool
    if _pool is None:  # in the worker, on first use: no connection crosses a fork
        _pool = ConnectionPool(DSN, min_size=2, max_size=POOL_SIZE, open=True,
                               kwargs={"autocommit": True, "row_factory": dict_row})
        with _pool.connection() as conn:
            ensure_schema(conn)
    return _pool


@app.get("/products")
def products():
    category = int(request.args.get("category", "3"))
    with pool().connection() as conn:
        rows = conn.execute(
            "SELECT id, name, price::float AS price, stock FROM products "
            "WHERE category = %s ORDER BY price LIMIT 5", (category,)).fetchall()
    return jsonify(category=category, products=rows)


@app.get("/slow")
def slow():
    ms = min(float(request.args.get("ms", "50")), 10_000.0)
    with pool().connection() as conn:  # a slow report query: holds a pooled connection
        conn.execute("SELECT pg_sleep(%s)", (ms / 1000.0,))
    return jsonify(slept_ms=ms)
