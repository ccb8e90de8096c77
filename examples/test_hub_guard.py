"""An example for your own test suite: fail a test that blocks the gevent hub.

Put `from gevent import monkey; monkey.patch_all()` at the top of your conftest.py (as your
app is patched in production), then ask for the `hub_block_guard` fixture that gevent-probe
installs as a pytest plugin:

    DATABASE_URL=postgresql://... pytest examples/test_hub_guard.py

With psycopg 3 imported after patching, the queries overlap and the test passes; with
psycopg2 and no psycogreen, each query holds the hub for its whole duration and the test
fails, naming the longest block and the line that held the hub.
"""

import os

import gevent
import psycopg
import pytest


@pytest.fixture
def dsn() -> str:
    if "DATABASE_URL" not in os.environ:
        pytest.skip("set DATABASE_URL to a PostgreSQL server to run this example")
    return os.environ["DATABASE_URL"]


def test_concurrent_queries_leave_the_hub_free(hub_block_guard, dsn):
    hub_block_guard.max_ms = 10  # the longest the hub may stall (the default)
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(8)]
    try:
        gevent.joinall([gevent.spawn(c.execute, "SELECT pg_sleep(0.05)") for c in conns],
                       raise_error=True)
    finally:
        for conn in conns:
            conn.close()
