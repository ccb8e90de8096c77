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


def instrument(tracer: SliceTracer) -> None:
    """Wrap the connect functions of the drivers imported so far (idempotent)."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        connection = psycopg.Connection
        original = connection.__dict__["connect"]
        if not getattr(original.__func__, _MARK, False):
            wrapped = _timed(original.__func__, tracer)
            connection.connect = classmethod(wrapped)  # type: ignore[method-assign]
            psycopg.connect = connection.connect
    psycopg2 = sys.modules.get("psycopg2")
    if psycopg2 is not None and not getattr(psycopg2.connect, _MARK, False):
        psycopg2.connect = _timed(psycopg2.connect, tracer)


def _timed(connect: Callable[..., Any], tracer: SliceTracer) -> Callable[..., Any]:
    @functools.wraps(connect)
    def timed_connect(*args: Any, **kwargs: Any) -> Any:
        with tracer.within_connect():
            return connect(*args, **kwargs)

    setattr(timed_connect, _MARK, True)
    return timed_connect
