"""Greenlets waiting for a connection that another greenlet holds (the psycopg #919 shape).

psycopg 3 serialises the use of a connection with its `lock` (a threading.Lock, which gevent
patches into a greenlet lock). When greenlets share one connection, all but one wait on that
lock; gevent's lock is not fair, so the greenlet that holds it can take it again and again
while the others starve. Latency alone cannot tell that from a slow server, so we time the
lock itself: every connection psycopg creates in a measured process gets a TimedLock, which
records how long each acquisition waited and where the first waiting greenlet came from.

psycopg2 has no such lock to time: its cooperative mode (psycogreen) refuses a second query on
a busy connection ("execute cannot be used while an asynchronous query is underway"), and
without psycogreen the hub blocks, so nobody ever waits on the connection.
"""

from __future__ import annotations

import sys
import time
import traceback
from typing import Any

from probe import stats
from probe.messages import LockReport

# Frames of these files say where the wait happened, not who shared the connection.
_INTERNAL = ("/psycopg/", "/psycopg_pool/", "/gevent/", "/probe/contention.py",
             "/threading.py", "/contextlib.py")


class LockStats:
    """Process-wide record of connection-lock acquisitions (one per measured process)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.acquisitions = 0
        self.contended = 0
        self.wait_total_ns = 0
        self.waits = stats.new_histogram()  # µs, contended acquisitions only
        self.first_frame: str | None = None

    def record(self, waited_ns: int) -> None:
        self.acquisitions += 1
        if waited_ns <= 0:
            return
        self.contended += 1
        self.wait_total_ns += waited_ns
        self.waits.record_value(max(1, waited_ns // 1000))

    def report(self) -> LockReport:
        return LockReport(acquisitions=self.acquisitions, contended=self.contended,
                          wait_hdr=stats.encode(self.waits),
                          wait_total_ms=round(self.wait_total_ns / 1e6, 3),
                          first_frame=self.first_frame)


STATS = LockStats()


class TimedLock:
    """A drop-in for the lock psycopg gives each connection, timing every wait for it."""

    __slots__ = ("_lock",)

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):  # the common case, on every query: kept lean
            STATS.acquisitions += 1
            return True
        if not blocking:
            return False
        if STATS.first_frame is None:
            STATS.first_frame = caller_frame()
        start = time.perf_counter_ns()
        acquired: bool = (self._lock.acquire(True) if timeout == -1 else
                          self._lock.acquire(True, timeout))
        if acquired:
            STATS.record(time.perf_counter_ns() - start)
        return acquired

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        held: bool = self._lock.locked()
        return held

    def __enter__(self) -> bool:
        if self._lock.acquire(False):
            STATS.acquisitions += 1
            return True
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def instrument_psycopg() -> bool:
    """Give every psycopg connection created from now on a TimedLock. Idempotent; False when
    psycopg is not imported (we never import it ourselves: import order is the variant's)."""
    module = sys.modules.get("psycopg")
    if module is None:
        return False
    connection_class = module.Connection
    original = connection_class.__init__
    if getattr(original, "_gevent_probe", False):
        return True

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.lock = TimedLock(self.lock)

    __init__._gevent_probe = True  # type: ignore[attr-defined]
    connection_class.__init__ = __init__
    return True


def caller_frame() -> str | None:
    """The innermost frame outside psycopg, gevent and the probe's lock: who shared it."""
    for entry in reversed(traceback.extract_stack()[:-2]):
        if not any(part in entry.filename for part in _INTERNAL):
            return f'File "{entry.filename}", line {entry.lineno}, in {entry.name} `{entry.line}`'
    return None
