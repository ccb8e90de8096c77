"""What to do about a verdict: each fix fits the cause that was measured, and names the frame
or the setting to change where it is known."""

from __future__ import annotations

from probe import thresholds as t
from probe.measurement import Deadlock, HttpView, Measurement, Runtime


def errors_fix(m: Measurement) -> str:
    messages = " ".join(m.db.errors_by_message)
    rt = m.runtime
    if "asynchronous callback" in messages:
        return ("psycogreen's wait callback makes psycopg2 refuse COPY (copy_expert cannot be "
                "used with an asynchronous callback): run COPY on a connection without it (in "
                "gevent.get_hub().threadpool), or move to psycopg 3.")
    if "asynchronous query is underway" in messages:
        return contention_fix(rt)
    if "pipeline" in messages or "another command is already in progress" in messages:
        return ("Greenlets sharing one psycopg connection interleave their protocol messages "
                f"(psycopg {rt.driver_version}; psycopg #1198, #1210): give each greenlet its "
                "own connection (psycopg_pool), or upgrade psycopg (3.2.13 holds the "
                "connection lock for a whole COPY and pipeline).")
    return "Look at the errors above: the driver raised them under this workload."


def deadlock_fix(d: Deadlock, rt: Runtime) -> str:
    if any("connection lock is the OS's" in lock for lock in d.locks):
        return ("psycopg was imported before gevent patched, so each connection's lock is an OS "
                "lock: a greenlet that waits for a connection another greenlet holds stops the "
                "whole thread, and the holder never runs again. Call monkey.patch_all() before "
                "anything imports psycopg (don't --preload an app that imports it at module "
                "level), and don't share a connection across greenlets.")
    if d.how == "held" and rt.driver == "psycopg2":
        return ("psycopg2 without psycogreen waits for the server without yielding: a greenlet "
                "waiting for a row lock blocks the whole worker, so the greenlet that holds the "
                "lock can never commit. Call psycogreen.gevent.patch_psycopg() after "
                "monkey.patch_all(), or move to psycopg 3 imported after patching; and set "
                "statement_timeout so that a stuck worker fails instead of hanging.")
    if d.how == "held":
        return ("A call holds the hub while it waits for something only another greenlet of the "
                "same process can release: make that call cooperative (patch before importing "
                "the driver; wait_poll, not wait_c), and set statement_timeout.")
    return ("Greenlets wait on each other in a cycle (locks, rows, a shared connection): take "
            "locks in one order, keep transactions short, and give each greenlet its own "
            "connection.")


def rerun_fix(m: Measurement) -> str:
    if m.http is not None and m.http.loadgen_saturated:
        return "Give locust more cores with --locust-processes N, or fewer --users."
    if m.http is not None and m.http.error_rate > t.MAX_ERROR_RATE:
        return requests_failed_fix(m.http)
    if any("died" in p for p in m.problems):
        return ("Look at the worker's log for why it died (memory, a crash in the driver), "
                "then run again.")
    if m.db.first_error and "asynchronous query is underway" in m.db.first_error:
        return contention_fix(m.runtime)
    if m.db.errors or any("PostgreSQL" in p for p in m.problems):
        return "Look at the first error above, fix the database side, and run again."
    if m.problems:  # the measurement itself failed (gunicorn could not start, a timeout...)
        return ("The measurement did not complete: fix what the first line above says, and "
                "run again.")
    return "Run again with more --queries, a longer --duration or more --concurrency."


def hub_blocking_fix(m: Measurement, serialised: bool) -> str:
    rt = m.runtime
    if rt.driver == "psycopg2":
        if rt.psycogreen:
            return ("psycogreen's callback is installed yet the hub blocks: make sure "
                    "patch_psycopg() runs before any connection is opened.")
        return ("Call psycogreen.gevent.patch_psycopg() right after gevent.monkey.patch_all() "
                "(pip install psycogreen), or move to psycopg 3 >= 3.1.14 imported after patching.")
    if rt.wait_function == "wait_c":
        if rt.psycopg_wait_func_env:
            return ("Unset PSYCOPG_WAIT_FUNC (or set it to wait_poll): wait_c waits inside C "
                    "and never yields to the gevent hub.")
        if (3, 1, 5) <= release_tuple(rt.driver_version) < t.PSYCOPG_GEVENT_CHECK:
            return (f"Upgrade psycopg to >= 3.1.14 (psycopg issue #527, fixed by PR #688): "
                    f"{rt.driver_version} picks wait_c even under gevent.")
        return ("Call gevent.monkey.patch_all() before anything imports psycopg: psycopg picks "
                "its wait function once, at import. Under gunicorn, don't --preload an app that "
                "imports psycopg at module level (or import it lazily), or set "
                "PSYCOPG_WAIT_FUNC=wait_poll.")
    culprits = m.slices.culprits if m.slices is not None else ()
    where = f" ({culprits[0].frame})" if culprits else ""
    if not serialised:
        return (f"Every query blocks the hub for ~{m.blocked_ms.p50:.1f} ms in the wait function "
                f"{rt.wait_function}{where}: make that call cooperative (gevent-aware I/O) or "
                "remove it.")
    return ("The hub is blocked by the call in the frames above"
            f"{where}; make it cooperative (gevent-aware I/O or gevent.threadpool).")


def held_blocked_fix(m: Measurement) -> str:
    where = _held_where(m, "blocked")
    if "connect" in where:
        return (f"Connecting to PostgreSQL blocks the hub ({where}): the driver's connect does "
                "not yield. Use a driver whose connect is cooperative under gevent (psycopg 3 "
                "imported after patching, or psycopg2 with psycogreen), resolve host names "
                "before connecting, and reuse connections through a pool.")
    return ("The driver's own waits are cooperative, but something else blocks the hub during "
            f"requests: {where}. Make that call cooperative (gevent-aware I/O) or run it in "
            "gevent.get_hub().threadpool.")


def computing_fix(m: Measurement) -> str:
    where = _held_where(m, "computing")
    if "connect" in where:
        return (f"Connection handshakes compute without yielding ({where}): SCRAM "
                "authentication and TLS run inside libpq. Open connections once and reuse them "
                "(psycopg_pool.ConnectionPool).")
    return (f"Code computes without yielding during requests ({where}), and every other "
            "request of the worker waits meanwhile: make that work smaller or cache it, move it "
            "to another process (a task queue, multiprocessing), or run more gunicorn workers "
            "so that fewer requests share one hub.")


def _held_where(m: Measurement, kind: str) -> str:
    s = m.slices
    # The frame sampled most often over every held run first: one run's first sample may come
    # late (a computing hub gives the watchdog the GIL after the switch interval), after the
    # work, in whatever call followed it.
    if s and s.culprits and s.culprits[0].sampled:
        return s.culprits[0].frame
    held = [h for h in (s.longest if s else ()) if h.kind == kind]
    sampled = next((h.frames[0] for h in held if h.frames), None)
    if sampled:
        return sampled
    # Nothing sampled while it ran: where it switched out is a hint, and said to be one.
    switched = next((h.yielded_at for h in held if h.yielded_at), None)
    if switched:
        return f"not sampled while it ran; it yielded next at {switched}"
    return "the frames the report lists"


def busy_wait_fix(rt: Runtime) -> str:
    return (f"The wait function {rt.wait_function} polls without blocking: remove it and let "
            "psycopg use its default under gevent (wait_poll, which blocks in the hub with a "
            "timeout), or wait with gevent.select / gevent.socket.wait_read.")


def requests_failed_fix(http: HttpView) -> str:
    codes = {code for r in http.routes for code in r.failed_with}
    if codes and codes <= {"404", "405"}:
        return ("The app does not serve the routes the load calls: the built-in scenarios call "
                "GET /select1 and GET /sleep?ms=N; give your own scenario with --locustfile.")
    if codes and all(not code.isdigit() for code in codes):
        return ("The app did not answer (connections refused or reset): look at gunicorn's "
                "errors in the run's folder, or run the app by hand under gunicorn -k gevent.")
    return ("Make the app answer under the probe: it runs in gunicorn gevent workers with "
            "GEVENT_PROBE_DSN and DATABASE_URL (a postgresql:// URI) naming the probe's "
            "database; the error above is what it raised or answered (see `gevent-probe run "
            "--help`).")


def contention_fix(rt: Runtime) -> str:
    if rt.driver == "psycopg2" and rt.psycogreen:
        return ("psycopg2 with psycogreen cannot share a connection across greenlets at all: "
                "give each greenlet its own (psycopg2.pool, or a connection per task).")
    return ("Don't share one connection across greenlets: give each concurrent greenlet its "
            "own, with a pool sized for the greenlets that query at once "
            "(psycopg_pool.ConnectionPool(max_size=...)), or a connection per task.")


def release_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)
