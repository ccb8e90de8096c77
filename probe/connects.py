"""Connections opened in a measured process: how long their handshakes held the hub.

Opening a PostgreSQL connection computes inside libpq without yielding (SCRAM authentication,
TLS), for milliseconds, and the server forks a backend meanwhile. An app that connects per
request pays that every time; the slice tracer counts the slices a greenlet runs while inside
a connect (probe.slices.SliceTracer.within_connect), so the report can name the cost.

We wrap the drivers' own entry points once they are imported (never importing them
ourselves: the import order is the variant's): psycopg's `Connection.connect`, which pools
call, and the module-level `psycopg.connect` / `psycopg2.connect` aliases apps call.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from probe.slices import SliceTracer

_MARK = "_gevent_probe_connect"
# The tracer whose report counts the connects: the wrappers stay on the drivers once put
# there, and a later monitor (the pytest guard's, test after test) takes them over.
_current: SliceTracer | None = None


def instrument(tracer: SliceTracer) -> None:
    """Count connects in `tracer`, wrapping the drivers imported so far (idempotent)."""
    global _current
    _current = tracer
    psycopg: Any = sys.modules.get("psycopg")
    if psycopg is not None:
        connection = psycopg.Connection
        original = connection.__dict__["connect"]
        if not getattr(original.__func__, _MARK, False):
            connection.connect = classmethod(_timed(original.__func__))
            psycopg.connect = connection.connect
    psycopg2: Any = sys.modules.get("psycopg2")
    if psycopg2 is not None and not getattr(psycopg2.connect, _MARK, False):
        psycopg2.connect = _timed(psycopg2.connect)


def release(tracer: SliceTracer) -> None:
    """Stop counting connects in `tracer` (its monitor stopped); the wrappers pass through."""
    global _current
    if _current is tracer:
        _current = None


def _timed(connect: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(connect)
    def timed_connect(*args: Any, **kwargs: Any) -> Any:
        tracer = _current
        if tracer is None:
            return connect(*args, **kwargs)
        with tracer.within_connect():
            return connect(*args, **kwargs)

    setattr(timed_connect, _MARK, True)
    return timed_connect
