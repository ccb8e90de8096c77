"""A catalog API in Flask: a pool as large as the users, ~100 rows of JSON per response.

    CATALOG_POOL_SIZE=50 gevent-probe run --app catalog_app:app --chdir examples \
        --locustfile examples/app_locustfile.py

Heavier per request than the sample app: 100 rows fetched as dicts and serialised to JSON
(~12 KB) in every response. psycopg 3 binary through psycopg_pool, every wait cooperative.
"""

from __future__ import annotations

import os

from catalog_schema import ensure_schema
from flask import Flask, jsonify, request
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

app = Flask(__name__)
DSN = os.environ.get("DATABASE_URL") or os.environ["GEVENT_PROBE_DSN"]
POOL_SIZE = int(os.environ.get("CATALOG_POOL_SIZE") or 150)
_pool: ConnectionPool | None = None


def pool() -> ConnectionPool:
    global _pool
    if _pool is None:
        _pool = ConnectionPool(DSN, min_size=4, max_size=POOL_SIZE, open=True,
                               kwargs={"autocommit": True, "row_factory": dict_row})
        with _pool.connection() as conn:
            ensure_schema(conn)
    return _pool


@app.get("/products")
def products():
    offset = int(request.args.get("page", "0")) * 100 % 900
    with pool().connection() as conn:
        rows = conn.execute(
            "SELECT id, name, category, price::float AS price, stock, description "
            "FROM products ORDER BY id LIMIT 100 OFFSET %s", (offset,)).fetchall()
    return jsonify(count=len(rows), products=rows)


@app.get("/slow")
def slow():
    ms = min(float(request.args.get("ms", "50")), 10_000.0)
    with pool().connection() as conn:
        conn.execute("SELECT pg_sleep(%s)", (ms / 1000.0,))
    return jsonify(slept_ms=ms)
