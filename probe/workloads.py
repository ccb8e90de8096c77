"""What the load runs, beside SELECT 1: the query patterns users hit, each with a known answer.

Every workload is a unit of work one greenlet repeats on its connection (or on the shared one:
`--connections shared`); bench runs it in its greenlets, `run` behind the sample app's route
`/work`. Each has a control that proves what it finds (see the README's table):

- select1: today's load, one SELECT 1.
- rowlock: a transaction that locks one row (`SELECT ... FOR UPDATE`), yields for a moment,
  updates it and commits; every greenlet locks the same row. A driver that blocks the hub
  while it waits for the lock never lets the holder commit: the process freezes (gevent
  #1881's shape), which the no-progress watchdog calls a deadlock.
- copy: `COPY ... FROM STDIN` of COPY_ROWS rows; psycopg2 with psycogreen refuses it.
- notify: one greenlet per connection waits for notifications (LISTEN) while the others
  query the same connection; psycopg 3.2+ holds the connection lock while it waits
  (psycopg #760, #1310): the queries starve.
- connect: a connection per unit (connect, SELECT 1, close): the handshake's cost, and a
  driver whose connect blocks the hub.
- mixed: execute, executemany, COPY and a pipeline of two statements, a quarter of the
  greenlets each, meant for one shared connection: psycopg 3.2.10-3.2.12 raise protocol
  errors there (psycopg #1198), later releases starve the slower kinds.

Only the measured processes import this module (after gevent patched): it imports gevent.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent

from probe.drivers import Driver

COPY_ROWS = 100
MIXED_ROWS = 20
ROWLOCK_HOLD_S = 0.01  # the holder yields this long with the row locked
NOTIFY_WAIT_S = 0.2


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    setup: Callable[[Driver, Any], None]  # once, on a connection of its own
    unit: Callable[[Driver, Any, int], str]  # one unit, by greenlet number; returns its kind
    connects: bool = False  # each unit opens its own connection (no pooled one)


def _setup_nothing(driver: Driver, conn: Any) -> None:
    return None


def _select1(driver: Driver, conn: Any, i: int) -> str:
    driver.select1(conn)
    return "select1"


# -- rowlock -----------------------------------------------------------------------------

def _setup_rowlock(driver: Driver, conn: Any) -> None:
    driver.run(conn, "CREATE TABLE IF NOT EXISTS gevent_probe_rowlock (id int PRIMARY KEY, "
                     "n bigint NOT NULL DEFAULT 0)")
    driver.run(conn, "INSERT INTO gevent_probe_rowlock VALUES (1, 0) ON CONFLICT DO NOTHING")


def _rowlock(driver: Driver, conn: Any, i: int) -> str:
    driver.run(conn, "BEGIN")
    try:
        driver.execute(conn, "SELECT n FROM gevent_probe_rowlock WHERE id = 1 FOR UPDATE")
        gevent.sleep(ROWLOCK_HOLD_S)  # a cooperative wait with the row locked
        driver.run(conn, "UPDATE gevent_probe_rowlock SET n = n + 1 WHERE id = 1")
        driver.run(conn, "COMMIT")
    except BaseException:
        if not driver.is_broken(conn):
            driver.run(conn, "ROLLBACK")
        raise
    return "rowlock"


# -- copy --------------------------------------------------------------------------------

def _setup_copy(driver: Driver, conn: Any) -> None:
    driver.run(conn, "CREATE UNLOGGED TABLE IF NOT EXISTS gevent_probe_copy (id int, "
                     "name text, price numeric)")


def copy_rows(driver: Driver, conn: Any, rows: int) -> None:
    data = [(n, f"row {n}", n / 10) for n in range(rows)]
    if driver.variant.driver == "psycopg":
        with conn.cursor() as cur, cur.copy(
                "COPY gevent_probe_copy (id, name, price) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        return
    text = "".join(f"{a}\t{b}\t{c}\n" for a, b, c in data)
    with conn.cursor() as cur:
        cur.copy_expert("COPY gevent_probe_copy (id, name, price) FROM STDIN", io.StringIO(text))


def _copy(driver: Driver, conn: Any, i: int) -> str:
    copy_rows(driver, conn, COPY_ROWS)
    return "copy"


# -- notify ------------------------------------------------------------------------------

def _setup_notify(driver: Driver, conn: Any) -> None:
    return None


def _notify(driver: Driver, conn: Any, i: int) -> str:
    """A quarter of the greenlets listen; the others query (on a shared connection, the
    same one)."""
    if i % 4 == 0:
        driver.listen(conn, "gevent_probe", NOTIFY_WAIT_S)
        return "listen"
    driver.select1(conn)
    return "select1"


# -- connect -----------------------------------------------------------------------------

def _connect(driver: Driver, conn: Any, i: int) -> str:
    """`conn` is the DSN here: a new connection every unit."""
    fresh = driver.connect(conn)
    try:
        driver.select1(fresh)
    finally:
        fresh.close()
    return "connect"


# -- mixed -------------------------------------------------------------------------------

def _setup_mixed(driver: Driver, conn: Any) -> None:
    _setup_copy(driver, conn)


def _mixed(driver: Driver, conn: Any, i: int) -> str:
    kind = MIXED_KINDS[i % len(MIXED_KINDS)]
    if kind == "execute":
        driver.select1(conn)
    elif kind == "executemany":
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO gevent_probe_copy (id, name, price) VALUES "
                            "(%s, %s, %s)", [(n, "many", n) for n in range(MIXED_ROWS)])
    elif kind == "copy":
        copy_rows(driver, conn, MIXED_ROWS)
    else:
        driver.pipeline(conn, ["SELECT 1", "SELECT 2"])
    return kind


MIXED_KINDS = ("execute", "executemany", "copy", "pipeline")

WORKLOADS = {w.name: w for w in (
    Workload("select1", "SELECT 1", _setup_nothing, _select1),
    Workload("rowlock", "a transaction locking one row (FOR UPDATE) that every greenlet "
             "wants, yielding while it holds it", _setup_rowlock, _rowlock),
    Workload("copy", f"COPY FROM STDIN of {COPY_ROWS} rows", _setup_copy, _copy),
    Workload("notify", "LISTEN and wait for notifications beside queries on the same "
             "connection", _setup_notify, _notify),
    Workload("connect", "a connection per unit: connect, SELECT 1, close", _setup_nothing,
             _connect, connects=True),
    Workload("mixed", "execute, executemany, COPY and a pipeline, a quarter of the greenlets "
             "each (on one shared connection: --connections shared)", _setup_mixed, _mixed),
)}
