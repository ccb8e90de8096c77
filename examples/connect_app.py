"""An app that opens a PostgreSQL connection per request (no pool).

    gevent-probe run --app connect_app:app --chdir examples \
        --locustfile examples/app_locustfile.py

Its waits are cooperative (psycopg 3 after patching), but every request pays a connection
handshake: SCRAM authentication computes for milliseconds inside libpq without yielding, and
the server starts a backend. Not hub blocking: a cost per request, which a pool removes.
"""

from __future__ import annotations

import json
import os

import psycopg
from catalog_schema import ensure_schema

DSN = os.environ.get("DATABASE_URL") or os.environ["GEVENT_PROBE_DSN"]
_ready = False


def app(environ, start_response):
    global _ready
    path = environ.get("PATH_INFO", "")
    with psycopg.connect(DSN, autocommit=True) as conn:  # a new connection every request
        if not _ready:
            ensure_schema(conn)
            _ready = True
        if path == "/slow":
            conn.execute("SELECT pg_sleep(0.05)")
            body = {"slept_ms": 50}
        else:
            rows = conn.execute("SELECT id, name, price::float FROM products "
                                "ORDER BY id LIMIT 5").fetchall()
            body = {"products": rows}
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
