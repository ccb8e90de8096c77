"""Load a variant's driver inside a measured process, in the variant's order, and use it.

This is the only module that calls `gevent.monkey.patch_all()`, and only when a worker or
app entry point asks it to (`activate`). Order matters: psycopg chooses its wait function
once, when `psycopg.waiting` is first imported, and picks the blocking `wait_c` unless
gevent has already patched `select`.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probe.measurement import AppDriver, Runtime
from probe.variants import Variant


class DriverUnavailable(Exception):
    """The variant's driver cannot be imported in this environment."""


@dataclass
class Driver:
    variant: Variant
    module: Any  # psycopg or psycopg2

    def connect(self, dsn: str) -> Any:
        if self.variant.driver == "psycopg":
            return self.module.connect(dsn, autocommit=True)
        conn = self.module.connect(dsn)
        conn.autocommit = True
        return conn

    def execute(self, conn: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.variant.driver == "psycopg":
            return conn.execute(sql, params or None).fetchone()
        with conn.cursor() as cur:
            cur.execute(sql, params or None)
            return cur.fetchone()

    def run(self, conn: Any, sql: str, params: tuple[Any, ...] = ()) -> None:
        """A statement whose result is not read (BEGIN, UPDATE, COMMIT...)."""
        if self.variant.driver == "psycopg":
            conn.execute(sql, params or None)
            return
        with conn.cursor() as cur:
            cur.execute(sql, params or None)

    def listen(self, conn: Any, channel: str, timeout_s: float) -> None:
        """LISTEN, then wait up to `timeout_s` for a notification, as a consumer loop does."""
        self.run(conn, f"LISTEN {channel}")
        if self.variant.driver == "psycopg":
            import inspect

            if "timeout" in inspect.signature(conn.notifies).parameters:  # psycopg >= 3.2
                for _ in conn.notifies(timeout=timeout_s, stop_after=1):
                    break
            return
        import gevent

        gevent.sleep(timeout_s)  # psycopg2 has no waiting generator: poll after a while
        conn.poll()
        conn.notifies.clear()

    def pipeline(self, conn: Any, statements: list[str]) -> None:
        """Statements in one round trip where the driver can (psycopg 3's pipeline mode)."""
        if self.variant.driver == "psycopg":
            with conn.pipeline():
                for sql in statements:
                    conn.execute(sql)
            return
        for sql in statements:
            self.run(conn, sql)

    def select1(self, conn: Any) -> Any:
        return self.execute(conn, "SELECT 1")

    def sleep(self, conn: Any, seconds: float) -> Any:
        return self.execute(conn, "SELECT pg_sleep(%s)", (seconds,))

    def is_broken(self, conn: Any) -> bool:
        return bool(conn.closed)

    def runtime(self) -> Runtime:
        return describe(self.variant, self.module)


def computation(ms: float) -> Callable[[], None]:
    """The compute control's work per request: `ms` on the CPU, never yielding (pure Python
    holding the GIL, the shape of a large JSON or a regex)."""
    seconds = ms / 1000.0

    def compute() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    return compute


def activate(variant: Variant, partial_block_ms: float = 2.0) -> Driver:
    """Patch gevent and import the driver in the variant's order; return a ready Driver."""
    if variant.import_before_patch:
        _import(variant)  # the trap: psycopg sees an unpatched select and picks wait_c
    from gevent import monkey

    monkey.patch_all()
    return load(variant, partial_block_ms)


_LOADED: dict[str, Driver] = {}


def load(variant: Variant, partial_block_ms: float = 2.0) -> Driver:
    """Import the driver in a process where gevent has already patched (or will not, for the
    preload control); install psycogreen or a control's wait function when the variant asks.
    Once per process: a second call returns the same Driver (a wait hook installs once)."""
    if variant.name in _LOADED:
        return _LOADED[variant.name]
    module = _import(variant)
    if variant.psycogreen:
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
    if variant.wait_hook == "spin":
        install_spin_wait()
    elif variant.wait_hook == "partial":
        install_partial_block(partial_block_ms / 1000.0)
    driver = _LOADED[variant.name] = Driver(variant, module)
    return driver


def _select_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("select"))


# Whether select was patched when this process first imported the driver (psycopg decides its
# wait function at that moment). None when something else imported it before us.
_PATCHED_AT_IMPORT: dict[str, bool | None] = {}


def _import(variant: Variant) -> Any:
    if variant.driver not in sys.modules:
        _PATCHED_AT_IMPORT.setdefault(variant.driver, _select_patched())
    else:
        _PATCHED_AT_IMPORT.setdefault(variant.driver, None)
    try:
        module = importlib.import_module(variant.driver)
        if variant.driver == "psycopg":
            _check_impl(variant, module)
        return module
    except DriverUnavailable:
        raise
    except Exception as ex:  # ImportError, and the AttributeError of a mismatched psycopg-c
        reason = f"{type(ex).__name__}: {ex}".splitlines()[0]
        raise DriverUnavailable(reason) from ex


def _check_impl(variant: Variant, module: Any) -> None:
    impl = module.pq.__impl__
    if variant.impl and impl != variant.impl:
        raise DriverUnavailable(f"PSYCOPG_IMPL={variant.impl} requested but psycopg loaded {impl}")


def _set_wait(wait: Any) -> None:
    import psycopg.waiting as waiting

    waiting.wait = wait
    # psycopg < 3.2 imported `wait` by name into psycopg.connection.
    connection = importlib.import_module("psycopg.connection")
    if hasattr(connection, "wait"):
        connection.wait = wait  # type: ignore[attr-defined]  # only in psycopg < 3.2


def install_partial_block(block_s: float) -> None:
    """The partial-block control: psycopg's own cooperative wait, except that every query
    first blocks the hub for `block_s` in a real blocking call (the unpatched time.sleep), the
    shape of a driver that does one short blocking syscall per query."""
    import psycopg.waiting as waiting
    from gevent.monkey import get_original

    cooperative = waiting.wait
    blocking_sleep = get_original("time", "sleep")

    def partial_block_wait(gen: Any, fileno: int, *args: Any, **kwargs: Any) -> Any:
        if block_s:  # even sleep(0) holds the hub ~0.06 ms here: 0 means no call at all
            blocking_sleep(block_s)
        return cooperative(gen, fileno, *args, **kwargs)

    _set_wait(partial_block_wait)


def install_spin_wait() -> None:
    """Replace psycopg's wait function with a cooperative but busy one (the busy-wait control).

    It polls the socket with a zero timeout and yields to the hub between polls, so other
    greenlets keep running while the process burns a core: the shape of a busy-wait bug.
    """
    import select

    import gevent
    import psycopg.waiting as waiting
    from gevent.monkey import get_original

    original_poll = get_original("select", "poll")
    masks = {waiting.Wait.R: select.POLLIN, waiting.Wait.W: select.POLLOUT,
             waiting.Wait.RW: select.POLLIN | select.POLLOUT}

    def spin_wait(gen: Any, fileno: int, *args: Any, **kwargs: Any) -> Any:
        try:
            state = next(gen)
            poller = original_poll()
            poller.register(fileno, masks[state])
            while True:
                events = poller.poll(0)
                if not events:
                    gevent.sleep(0)
                    continue
                mask = events[0][1]
                ready = 0
                if mask & (select.POLLIN | select.POLLERR | select.POLLHUP):
                    ready |= waiting.Ready.R
                if mask & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                    ready |= waiting.Ready.W
                state = gen.send(ready)
                poller.modify(fileno, masks[state])
        except StopIteration as done:
            return done.value

    _set_wait(spin_wait)


def describe(variant: Variant, module: Any) -> Runtime:
    import gevent
    import greenlet
    from gevent import monkey

    patched = tuple(sorted(n for n in getattr(monkey, "saved", {}) if not n.startswith("_gevent")))
    if variant.driver == "psycopg":
        import psycopg.waiting as waiting

        wait = getattr(waiting.wait, "__name__", repr(waiting.wait))
        return Runtime(
            driver="psycopg",
            driver_version=module.__version__,
            impl=module.pq.__impl__,
            wait_function=wait,
            libpq_version=_libpq(module.pq.version()),
            patched_modules=patched,
            gevent_version=gevent.__version__,
            greenlet_version=greenlet.__version__,
            psycopg_wait_func_env=os.environ.get("PSYCOPG_WAIT_FUNC"),
            patched_before_import=_PATCHED_AT_IMPORT.get("psycopg") is not False,
            locks=tuple(lock_binding()),
        )
    callback = module.extensions.get_wait_callback()
    wait = _callback_name(callback) if callback else "none (libpq blocks)"
    return Runtime(
        driver="psycopg2",
        driver_version=module.__version__.split()[0],
        impl="c",
        wait_function=wait,
        libpq_version=_libpq(module.extensions.libpq_version()),
        patched_modules=patched,
        gevent_version=gevent.__version__,
        greenlet_version=greenlet.__version__,
        psycogreen=callback is not None and "psycogreen" in _callback_name(callback),
        patched_before_import=_PATCHED_AT_IMPORT.get("psycopg2") is not False,
    )


def imported_by_app(when: str, skip: frozenset[str] = frozenset()) -> list[AppDriver]:
    """The drivers in this process now, as the app loaded them (`skip`: those the probe
    imported itself). Reads what is there; imports nothing."""
    found = []
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and "psycopg" not in skip and hasattr(psycopg, "pq"):
        waiting = sys.modules.get("psycopg.waiting")
        wait = getattr(getattr(waiting, "wait", None), "__name__", "?")
        found.append(AppDriver("psycopg", psycopg.__version__, psycopg.pq.__impl__, wait, when))
    psycopg2 = sys.modules.get("psycopg2")
    if psycopg2 is not None and "psycopg2" not in skip and hasattr(psycopg2, "extensions"):
        callback = psycopg2.extensions.get_wait_callback()
        wait = _callback_name(callback) if callback else "none (libpq blocks)"
        found.append(AppDriver("psycopg2", psycopg2.__version__.split()[0], "c", wait, when))
    return found


def lock_binding() -> list[str]:
    """How psycopg's and psycopg_pool's locks and sleeps are bound in this process: gevent's
    (cooperative) or the OS's. Bound at import: a module imported before monkey.patch_all()
    (by gunicorn --preload in the master, say) keeps the OS's, and a greenlet that waits on
    an OS lock another greenlet holds stops the whole thread (a deadlock once the holder
    needs the hub). Reads what is there; imports nothing."""
    found = []
    compat = sys.modules.get("psycopg._acompat")
    if compat is not None and hasattr(compat, "Lock"):
        found.append(f"psycopg's connection lock is {_binding(compat.Lock)}")
    pool = sys.modules.get("psycopg_pool._acompat")
    if pool is not None:
        for name in ("Lock", "Condition", "sleep"):
            if hasattr(pool, name):
                found.append(f"psycopg_pool's {name} is {_binding(getattr(pool, name))}")
    return found


def _binding(factory: Any) -> str:
    """'gevent's (cooperative)' or 'the OS's (...)' for a lock factory or a sleep function:
    a lock is made and looked into (threading's RLock and Condition wrap a lower lock)."""
    from gevent import monkey

    if getattr(factory, "__name__", "") == "sleep":
        if factory is monkey.get_original("time", "sleep"):
            return "the OS's time.sleep (it stops the whole thread)"
        return "gevent's (cooperative)"
    try:
        lock = factory()
    except Exception:  # not something we can make: say what it is
        return repr(factory)
    for _ in range(3):  # Condition -> RLock -> the lock that blocks
        inner = getattr(lock, "_block", None) or getattr(lock, "_lock", None)
        if inner is None:
            break
        lock = inner
    kind = type(lock)
    where = f"{kind.__module__}.{kind.__qualname__}"
    if kind.__module__.startswith("gevent"):
        return f"gevent's (cooperative: {where})"
    return f"the OS's ({where}: a waiting greenlet stops the whole thread)"


def _callback_name(callback: Any) -> str:
    return f"{getattr(callback, '__module__', '?')}.{getattr(callback, '__qualname__', callback)}"


def _libpq(version: int) -> str:
    major, minor = divmod(int(version), 10000)
    return f"{major}.{minor}" if major >= 10 else f"{version}"
