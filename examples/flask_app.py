"""A small Flask app to show `gevent-probe run --app`: it opens its own psycopg connections.

    gevent-probe run --app flask_app:app --chdir examples --variants psycopg-binary,preload

psycopg is imported at module level, as most apps do: fine under gunicorn's gevent worker,
the `--preload` trap otherwise (the `preload` variant shows it).
"""

import os

import psycopg
from flask import Flask, request

app = Flask(__name__)
DSN = os.environ["GEVENT_PROBE_DSN"]  # the probe hands its database to the app


@app.get("/select1")
def select1() -> str:
    with psycopg.connect(DSN, autocommit=True) as conn:
        return str(conn.execute("SELECT 1").fetchone()[0])


@app.get("/sleep")
def sleep() -> str:
    ms = min(float(request.args.get("ms", "50")), 10_000.0)
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("SELECT pg_sleep(%s)", (ms / 1000.0,))
    return f"{ms:g}"
