"""The one judge: a Measurement in, a verdict with its evidence and its fix out.

Why these signals: per-query latency timed inside a greenlet *rewards* a driver that blocks
the hub (it never yields, so nothing else runs while it waits). What exposes blocking is
concurrency and the hub itself:
- hub-blocking: C server-side sleeps that should overlap run one after another; or each
  query holds the hub while its thread sleeps in the kernel; or, under load, greenlet runs
  (slices) hold the hub past the threshold asleep in a call (whatever blocks, driver or app);
- busy-wait: the sleeps still overlap, but the hub thread burns a core while it waits;
- computing: under load, slices hold the hub past the threshold on the CPU (a large JSON, a
  regex, a handshake): not the driver, and not fixed the way blocking is;
- contention: greenlets wait on a connection another greenlet holds (psycopg #919's shape).
A late heartbeat never decides on its own: a saturated worker wakes it late with nothing but
short slices (the ready queue), which is capacity, reported as a finding of a healthy
verdict. Every sentence of evidence states what was measured or read from the process; a
"why" is given only where it is known.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from probe import thresholds as t
from probe.frames import caller_line, culprit_line
from probe.model import Deadlock, HttpView, Measurement, Runtime, Slices, Verdict

COOPERATIVE_PSYCOPG_WAITS = ("wait_poll", "wait_epoll", "wait_select", "wait_selector")


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    evidence: tuple[str, ...]
    fix: str | None
    notes: tuple[str, ...] = ()  # what a reader should act on whatever the verdict


@dataclass(frozen=True)
class Signals:
    """Which of the probe's signals are at or past their thresholds: what the verdict rests
    on, and what the reports mark in red. A measurement that failed flags nothing."""

    serialised: bool = False
    blocked: bool = False
    burning: bool = False
    held_blocked: bool = False  # slices under load held the hub asleep in a call
    computing: bool = False  # slices under load held the hub on the CPU
    contended: bool = False


def signals(m: Measurement) -> Signals:
    if m.problems:
        return Signals()
    s = m.slices
    return Signals(
        serialised=m.serialization.ratio >= m.serialization.threshold,
        blocked=m.blocked_ms.p50 >= t.BLOCKED_MS,
        burning=m.cpu.burn_ratio >= t.BURN_RATIO,
        held_blocked=s is not None and _held(s.blocked, s.blocked_share),
        computing=s is not None and _held(s.computing, s.computing_share),
        contended=m.contention is not None and m.contention.wait_share >= t.CONTENTION_SHARE)


def _held(count: int, share: float) -> bool:
    return count >= t.MIN_HELD and share >= t.HELD_SHARE


def judge(m: Measurement, own_app: bool = False) -> Judgement:
    if m.deadlock is not None:  # whatever else was or was not measured
        return Judgement("deadlock", tuple(deadlock_evidence(m.deadlock)),
                         deadlock_fix(m.deadlock, m.runtime))
    if not m.problems and driver_errors(m):
        return Judgement("errors", tuple(errors_evidence(m)), errors_fix(m))
    problems = untrustworthy(m, own_app)
    if problems and problems == [_shortfall(m, own_app)] and _starved(m):
        return Judgement("contention", (
            f"Starved: {problems[0]} The greenlets spent the load waiting for a connection "
            "another greenlet held.", _contention_sentence(m)), contention_fix(m.runtime))
    if problems:
        return Judgement("inconclusive", tuple(problems), _rerun_fix(m))
    flags = signals(m)
    serialised = flags.serialised
    mismatch = _wait_mismatch(m.runtime, serialised or flags.blocked)
    if mismatch:
        return Judgement("inconclusive", (mismatch, *_evidence(m, serialised)),
                         "Run `gevent-probe variants` and this variant again; if they still "
                         "disagree, please report it with results.json.")
    evidence = _evidence(m, serialised)
    return dataclasses.replace(_verdict(m, flags, evidence), notes=tuple(findings(m)))


def _verdict(m: Measurement, flags: Signals, evidence: list[str]) -> Judgement:
    serialised = flags.serialised
    if serialised or flags.blocked:
        if serialised and m.http is None:
            evidence.append(_latency_paradox(m))
        evidence.append(wait_sentence(m.runtime))
        return Judgement("hub-blocking", tuple(evidence), hub_blocking_fix(m, serialised))
    if flags.burning:
        evidence.append(wait_sentence(m.runtime))
        return Judgement("busy-wait", tuple(evidence), busy_wait_fix(m.runtime))
    if flags.held_blocked:
        return Judgement("hub-blocking", tuple(evidence), held_blocked_fix(m))
    if flags.computing:
        return Judgement("computing", tuple(evidence), computing_fix(m))
    if flags.contended:
        return Judgement("contention", tuple(evidence), contention_fix(m.runtime))
    return Judgement("healthy", tuple(evidence), None)


def untrustworthy(m: Measurement, own_app: bool = False) -> list[str]:
    problems = list(m.problems)
    if problems:
        return problems
    if m.http is not None:
        if m.http.loadgen_saturated:
            problems.append(f"The load generator used {100 * m.http.loadgen_core_share:.0f}% of "
                            f"a core (limit {100 * t.LOADGEN_SATURATION:.0f}%): it measured "
                            "itself, not the app.")
        if m.http.error_rate > t.MAX_ERROR_RATE:
            problems.append(f"{100 * m.http.error_rate:.1f}% of HTTP requests failed, above "
                            f"1%: {failed_requests(m.http)}"
                            + (f"; first error in the app: {m.db.first_error}"
                               if m.db.first_error else "") + ".")
    attempts = m.db.queries + m.db.errors
    if attempts and m.db.errors / attempts > t.MAX_ERROR_RATE:
        problems.append(f"{m.db.errors} of {attempts} queries failed "
                        f"({100 * m.db.errors / attempts:.1f}%, above 1%): {m.db.first_error}.")
    shortfall = _shortfall(m, own_app)
    if shortfall:
        problems.append(shortfall)
    if m.blocked_ms.count < t.MIN_PROBE_QUERIES:
        problems.append(f"only {m.blocked_ms.count} probe queries ran; at least "
                        f"{t.MIN_PROBE_QUERIES} are needed.")
    return problems


def _shortfall(m: Measurement, own_app: bool) -> str | None:
    served = sum(r.requests for r in m.http.routes) if m.http and own_app else m.db.queries
    if served >= t.MIN_QUERIES:
        return None
    what = "requests" if m.http and own_app else "successful queries"
    return f"only {served} {what} under load; at least {t.MIN_QUERIES} are needed."


def _starved(m: Measurement) -> bool:
    """Too few units because greenlets waited for a connection another held (psycopg's
    notifies() keeps the lock while it waits): the shortfall is the finding, not missing data,
    and "run more queries" would not fit it."""
    c = m.contention
    return (c is not None and c.wait_share >= t.CONTENTION_SHARE
            and c.contended >= t.MIN_HELD)


def failed_requests(http: HttpView) -> str:
    """Which routes failed, with what, and what the app raised: the cause, in one line."""
    parts = []
    for r in http.routes:
        if r.failures:
            codes = ", ".join(f"{n:,} x {code}" for code, n in sorted(
                r.failed_with.items(), key=lambda kv: -kv[1])) or f"{r.failures:,}"
            parts.append(f"{r.name} {codes}" + (f" ({r.first_failure})" if r.first_failure
                                                 else ""))
    text = "; ".join(parts) or "no route said why"
    if http.app_error:
        text += f"; the app raised {http.app_error}"
    return text


def driver_errors(m: Measurement) -> bool:
    """The driver raised on more than 1% of the load's units (the server still answering:
    the session stops the run when it does not)."""
    attempts = m.db.queries + m.db.errors
    return bool(attempts and m.db.errors / attempts > t.MAX_ERROR_RATE
                and m.db.errors_by_message)


def errors_evidence(m: Measurement) -> list[str]:
    db = m.db
    attempts = db.queries + db.errors
    counted = "; ".join(f"{n:,} x {message}" for message, n in sorted(
        db.errors_by_message.items(), key=lambda kv: -kv[1]))
    text = [f"{db.errors:,} of {attempts:,} units of the {db.workload} load failed "
            f"({100 * db.errors / attempts:.1f}%, flagged from "
            f"{100 * t.MAX_ERROR_RATE:.0f}%): {counted}."]
    if db.units_by_kind:
        text.append(_kinds_sentence(db.units_by_kind))
    text.append(wait_sentence(m.runtime))
    return text


def _kinds_sentence(kinds: dict[str, int]) -> str:
    done = ", ".join(f"{kind} {n:,}" for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    most, least = max(kinds.values()), min(kinds.values())
    starving = (f": the slowest kind completed {most / least:,.0f} times fewer units than the "
                "fastest (starvation)" if least and most >= 10 * least else "")
    return f"Units completed by kind: {done}{starving}."


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


def deadlock_evidence(d: Deadlock) -> list[str]:
    how = ("one run held the hub the whole time (its thread asleep in a call)"
           if d.how == "held" else "the hub ran, but no greenlet got any further")
    text = [f"The process froze: nothing completed for {d.after_s:.1f} s while work was "
            f"pending; {how}. It was ended, and what it had measured is lost."]
    where = culprit_line(d.hub_stack)
    if where:
        caller = caller_line(d.hub_stack)
        text.append(f"The hub was held in {where}"
                    + (f", called from {caller}" if caller and caller != where else "") + ".")
    waiting = [w for w in (culprit_line(s) for s in d.greenlets) if w]
    if waiting:  # the most telling first: a greenlet waiting in its own code, not in a pool
        waiting.sort(key=lambda w: "/gevent/" in w)
        text.append(f"{len(d.greenlets)} other greenlet(s) waited, e.g. in {waiting[0]}.")
    for b in d.backends:
        state = f"backend {b.pid} ({b.state}: `{b.query}`)"
        if b.waiting_for:
            holders = ", ".join(str(p) for p in b.blocked_by) or "?"
            text.append(f"PostgreSQL: {state} waited for a {b.waiting_for}, held by backend "
                        f"{holders}.")
        else:
            text.append(f"PostgreSQL: {state} held what another backend waited for.")
    text += [f"{lock[0].upper()}{lock[1:]}." for lock in d.locks if "the OS's" in lock]
    return text


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


def _rerun_fix(m: Measurement) -> str:
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
    return "Run again with more --queries, a longer --duration or more --concurrency."


def _wait_mismatch(rt: Runtime, blocking: bool) -> str | None:
    """The wait function the process reports must agree with what the probe measured."""
    expected = expected_behaviour(rt)
    if expected is None or (expected == "blocking") == blocking:
        return None
    measured = "blocked the hub" if blocking else "overlapped without blocking the hub"
    return (f"The process reports {rt.driver} waiting with {rt.wait_function}, which "
            f"{'blocks' if expected == 'blocking' else 'does not block'} the hub, yet the "
            f"probe's queries {measured}: the measurement and the driver disagree.")


def expected_behaviour(rt: Runtime) -> str | None:
    if rt.driver == "psycopg2":
        if rt.wait_function.startswith("none"):
            return "blocking"
        return "cooperative" if rt.psycogreen else None
    if rt.wait_function == "wait_c":
        return "blocking"
    if rt.wait_function in COOPERATIVE_PSYCOPG_WAITS and "select" in rt.patched_modules:
        return "cooperative"
    return None


# -- evidence ------------------------------------------------------------------------------

def _evidence(m: Measurement, serialised: bool) -> list[str]:
    sentences = []
    if m.http is not None:
        sentences.append(_users_sentence(m))
    sentences += [_serialisation_sentence(m, serialised), _blocked_sentence(m), _cpu_sentence(m)]
    if m.slices is not None:
        sentences += [_slices_sentence(m.slices), _queue_sentence(m, m.slices)]
        if m.slices.connects is not None:
            sentences.append(_connects_sentence(m, m.slices))
    if m.contention is not None and m.contention.acquisitions:
        sentences.append(_contention_sentence(m))
    if m.db.units_by_kind and len(m.db.units_by_kind) > 1:
        sentences.append(_kinds_sentence(m.db.units_by_kind))
    sentences += [f"Not measured here: {what}." for what in m.missing]
    return sentences


def _users_sentence(m: Measurement) -> str:
    http = m.http
    assert http is not None
    parts = [f"{r.name} p50/p99 {r.latency_ms.p50:.1f}/{r.latency_ms.p99:.1f} ms "
             f"({r.requests} requests)" for r in http.routes]
    died = [w for w in m.workers if w.status != "ok"]
    if http.target_rps is not None:
        load = (f"At a fixed {http.target_rps:,.0f} requests/s ({http.scenario}, an open model: "
                f"latency from when each request was due) for {http.duration_s:g} s")
    else:
        load = f"Under {http.users} users ({http.scenario}) for {http.duration_s:g} s"
    text = f"{load}: {http.rps:,.0f} RPS; " + ", ".join(parts) + "."
    late, sent = http.started_late_ms, http.sent
    if late is not None and sent is not None and http.target_rps is not None:
        if http.kept_schedule:
            text += (f" Locust sent {sent:,} requests on schedule (p99 {late.p99:.2f} ms "
                     "late).")
        else:
            text += (f" Locust could not keep the schedule: it sent {sent:,} requests "
                     f"({sent / http.duration_s:,.0f}/s of {http.target_rps:,.0f}), up to "
                     f"{late.max:,.1f} ms late (p99 {late.p99:,.1f} ms); the latencies still "
                     "count from when each was due.")
        answered = sum(r.requests for r in http.routes)
        if sent > answered:
            text += (f" {sent - answered:,} requests were still unanswered when the load "
                     "ended, and are not in the percentiles: the app fell behind the rate.")
    if died:
        text += " Workers: " + ", ".join(f"{w.pid} {w.status}" for w in died) + "."
    return text


def _serialisation_sentence(m: Measurement, serialised: bool) -> str:
    s = m.serialization
    how = ("they ran one after another: the hub was held while they waited"
           if serialised else "they overlapped, as cooperative waits should")
    return (f"{s.concurrency} concurrent pg_sleep({s.sleep_ms:g} ms) on the probe's own "
            f"connections took {s.wall_ms:.0f} ms (median of {s.rounds} round"
            f"{'s' if s.rounds != 1 else ''}), {s.ratio:.1f}x the sleep: {how} "
            f"(flagged from {s.threshold:.1f}x).")


def _blocked_sentence(m: Measurement) -> str:
    b = m.blocked_ms
    if b.p50 >= t.BLOCKED_MS:
        return (f"Each probe query held the hub while its thread was blocked in the kernel: "
                f"median {b.p50:.2f} ms, max {b.max:.2f} ms over {b.count} queries "
                f"(flagged from {t.BLOCKED_MS:g} ms).")
    return (f"No probe query held the hub while blocked: median {b.p50:.3f} ms off-CPU with "
            f"the hub held, over {b.count} queries (flagged from {t.BLOCKED_MS:g} ms).")


def _cpu_sentence(m: Measurement) -> str:
    burn = m.cpu.burn_ratio
    judgement = "busy-waiting" if burn >= t.BURN_RATIO else "idle, as a wait should be"
    return (f"While the probe's connections waited, the hub thread used {100 * burn:.0f}% of a "
            f"core: {judgement} (flagged from {100 * t.BURN_RATIO:.0f}%).")


def _slices_sentence(s: Slices) -> str:
    n = s.length_ms
    text = (f"Under load, greenlets ran {s.count:,} times without yielding (slices p50/p99/max "
            f"{n.p50:.2f}/{n.p99:.2f}/{n.max:.1f} ms); ")
    held = s.blocked + s.computing
    if not held:
        text += f"none held the hub past {s.threshold_ms:g} ms"
    else:
        text += (f"{held} held the hub past {s.threshold_ms:g} ms: {s.blocked} blocked off the "
                 f"CPU ({s.blocked_ms:,.0f} ms, {100 * s.blocked_share:.1f}% of the time), "
                 f"{s.computing} computing on the CPU ({s.computing_ms:,.0f} ms, "
                 f"{100 * s.computing_share:.1f}%)")
    text += f" (flagged from {100 * t.HELD_SHARE:.0f}% and {t.MIN_HELD} slices)"
    if s.preempted:
        text += (f"; {s.preempted} more, {s.preempted_ms:,.0f} ms, waited for a CPU other "
                 "processes had, and do not count")
    worst = next((h for h in s.longest if h.kind != "preempted"), None)
    if worst is not None:
        where = worst.frames[0] if worst.frames else worst.yielded_at
        text += (f"; the longest, {worst.ms:.1f} ms {worst.kind} ({worst.on_cpu_ms:.1f} ms on "
                 f"the CPU, {worst.off_cpu_ms:.1f} ms asleep)"
                 + (f" in {where}" if where else ""))
    return text + "."


def _queue_sentence(m: Measurement, s: Slices) -> str:
    """What the other greenlets waited (the heartbeat), and why: queueing or held slices."""
    lag, st = m.lag_ms, m.stalls
    text = (f"The greenlets were busy {100 * s.busy_share:.0f}% of the window; a "
            f"heartbeat woke up to {lag.max:.1f} ms late (p99 {lag.p99:.2f} ms, corrected for "
            f"coordinated omission), late by more than {st.threshold_ms:g} ms {st.count} "
            f"time(s): {st.queued} queued behind short slices, "
            f"{st.blocked + st.computing} held by one slice")
    if st.preempted:
        text += f", and {st.preempted} preempted by other processes"
    return text + "."


def findings(m: Measurement) -> list[str]:
    """Notes for a reader whatever the verdict: a saturated worker (capacity, which a late
    heartbeat shows but which is no pathology) and connections opened per request."""
    s = m.slices
    if s is None or m.problems:
        return []
    notes = []
    os_locks = [lock for lock in m.runtime.locks if "the OS's" in lock]
    if os_locks:
        notes.append(f"Bound before gevent patched: {'; '.join(os_locks)}. A greenlet that "
                     "waits on one while another greenlet holds it stops the whole worker, a "
                     "deadlock as soon as the holder needs the hub (greenlets sharing a "
                     "connection). Import psycopg and psycopg_pool only after "
                     "monkey.patch_all().")
    short_slices = s.blocked_share + s.computing_share < t.HELD_SHARE  # else: held, not queued
    if s.busy_share >= t.SATURATED_BUSY and m.http is not None and short_slices:
        capacity = (f"; at full use it would serve about {s.capacity_rps:,.0f} RPS"
                    if s.capacity_rps else "")
        notes.append(
            f"Saturated, not blocked: the greenlets ran {100 * s.busy_share:.0f}% of the load "
            f"window in short slices (p99 {s.length_ms.p99:.2f} ms), so requests waited in "
            f"the worker's ready queue (heartbeat p99 {m.lag_ms.p99:.1f} ms){capacity}. For "
            "lower latency: more workers (--workers), fewer --users, or a fixed --rate below "
            "that capacity.")
    c = s.connects
    served = sum(r.requests for r in m.http.routes) if m.http is not None else m.db.queries
    if c is not None and served and c.calls >= 0.5 * served:
        share = f", {100 * c.cpu_ms / s.cpu_ms:.0f}% of the worker's CPU" if s.cpu_ms else ""
        notes.append(
            f"A connection per request: {c.calls:,} connects for {served:,} requests cost "
            f"{c.cpu_ms:,.0f} ms on the CPU{share} (SCRAM, TLS, in slices up to "
            f"{c.longest_ms:.1f} ms). Open connections once and reuse them "
            "(psycopg_pool.ConnectionPool, psycopg2.pool).")
    return notes


def _connects_sentence(m: Measurement, s: Slices) -> str:
    c = s.connects
    assert c is not None
    served = (sum(r.requests for r in m.http.routes) if m.http is not None else m.db.queries)
    per = f" ({c.calls / served:.2f} per request)" if served else ""
    share = f", {100 * c.cpu_ms / s.cpu_ms:.0f}% of the hub thread's CPU" if s.cpu_ms else ""
    text = (f"{c.calls:,} connections were opened under load{per}: their handshakes held the "
            f"hub {c.held_ms:,.0f} ms in all, {c.cpu_ms:,.0f} ms of it on the CPU (SCRAM, "
            f"TLS){share}; the longest slice inside a connect {c.longest_ms:.1f} ms")
    return text + "."


def _contention_sentence(m: Measurement) -> str:
    c = m.contention
    assert c is not None
    if not c.contended:
        return (f"No greenlet waited for a connection another held ({c.acquisitions:,} "
                f"acquisitions of psycopg's connection lock).")
    w = c.wait_ms
    call = m.db.latency_ms.p50
    fairness = ""
    if call and w.max >= 10 * call:
        fairness = (f" A greenlet waited up to {w.max:,.1f} ms for a connection whose queries "
                    f"take {call:.2f} ms (median): the lock is not fair, the greenlet that holds "
                    "it takes it again while the others starve.")
    where = f" First waiter: {c.first_frame}." if c.first_frame else ""
    if c.step_ms:
        fairness += (f" The waits form a staircase: each waiter waited ~{c.step_ms:.1f} ms "
                     f"longer than the one before, up to {w.max:.1f} ms, as if each got the "
                     "connection only after a whole turn of the one before it.")
    return (f"{c.contended:,} of {c.acquisitions:,} acquisitions of psycopg's connection lock "
            f"waited for a connection another greenlet held ({c.connections} connections): "
            f"{c.wait_total_ms:,.0f} ms in all, {100 * c.wait_share:.0f}% of the time in "
            f"driver calls (flagged from {100 * t.CONTENTION_SHARE:.0f}%); waits p50/p99/max "
            f"{w.p50:.1f}/{w.p99:.1f}/{w.max:.1f} ms.{fairness}{where}")


def _latency_paradox(m: Measurement) -> str:
    return (f"SELECT 1 looks fast in-greenlet (avg {m.db.latency_ms.avg:.3f} ms) only because "
            "the driver never yields: per-query latency rewards hub blocking.")


def wait_sentence(rt: Runtime) -> str:
    """What the process reported of its wait, and why, where the why is known."""
    if rt.driver == "psycopg2":
        return f"psycopg2 {rt.driver_version} wait callback: {rt.wait_function}."
    text = (f"psycopg {rt.driver_version} ({rt.impl}, libpq {rt.libpq_version}) waits with "
            f"{rt.wait_function}")
    if rt.wait_function != "wait_c":
        return text + "."
    version = _version(rt.driver_version)
    if rt.psycopg_wait_func_env == "wait_c":
        why = "because PSYCOPG_WAIT_FUNC=wait_c is set in the process"
    elif version < (3, 1, 5):
        why = ""
    elif version < t.PSYCOPG_GEVENT_CHECK:
        why = ("because this release picks wait_c under gevent whatever the import order "
               "(psycopg #527, fixed in 3.1.14 by PR #688)")
    elif not rt.patched_before_import:
        why = "because gevent had not yet patched select when psycopg was imported"
    else:
        why = ("which this release picks only when select is unpatched at import: psycopg was "
               "imported before gevent patched (e.g. by gunicorn --preload, in the master)")
    return text + (f", {why}." if why else ".")


# -- fixes ---------------------------------------------------------------------------------

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
        if (3, 1, 5) <= _version(rt.driver_version) < t.PSYCOPG_GEVENT_CHECK:
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
    held = [h for h in (s.longest if s else ()) if h.kind == kind]
    for h in held:
        if h.frames or h.yielded_at:
            return h.frames[0] if h.frames else str(h.yielded_at)
    if s and s.culprits:
        return s.culprits[0].frame
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


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)
