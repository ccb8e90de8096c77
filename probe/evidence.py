"""The evidence of a verdict, in sentences: what was measured or read from the process, with
the threshold that flags it; a "why" only where it is known."""

from __future__ import annotations

from probe import thresholds as t
from probe.fixes import release_tuple
from probe.frames import caller_line, culprit_line
from probe.measurement import Deadlock, HttpView, Measurement, Runtime, Slices

COOPERATIVE_PSYCOPG_WAITS = ("wait_poll", "wait_epoll", "wait_select", "wait_selector")


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


def sentences(m: Measurement, serialised: bool) -> list[str]:
    sentences = []
    if m.http is not None:
        sentences.append(_users_sentence(m))
    sentences += [_serialisation_sentence(m, serialised), _blocked_sentence(m), _cpu_sentence(m)]
    if m.slices is not None:
        sentences += [_slices_sentence(m.slices), _queue_sentence(m, m.slices)]
        if m.slices.connects is not None:
            sentences.append(_connects_sentence(m, m.slices))
    if m.contention is not None and m.contention.acquisitions:
        sentences.append(contention_sentence(m))
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
    if s.blocked >= t.MIN_HELD and s.blocked_share >= t.HELD_SHARE \
            and s.blocked_bursts(t.BURST_GAP_S, t.BURST_MAX_S) == 1:
        text += (", but the blocked ones came in one burst: a stall of the machine holds every "
                 "run at once, a blocking call holds them again and again, so they do not "
                 "count")
    if s.preempted:
        text += (f"; {s.preempted} more, {s.preempted_ms:,.0f} ms, waited for a CPU other "
                 "processes (or the VM's host) had, and do not count")
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


def contention_sentence(m: Measurement) -> str:
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


def latency_paradox(m: Measurement) -> str:
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
    version = release_tuple(rt.driver_version)
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
