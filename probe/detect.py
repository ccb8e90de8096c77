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
verdict. The sentences of evidence are written in probe.evidence, the fixes in probe.fixes;
this module decides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from probe import thresholds as t
from probe.evidence import (
    contention_sentence,
    deadlock_evidence,
    errors_evidence,
    expected_behaviour,
    failed_requests,
    findings,
    latency_paradox,
    sentences,
    wait_sentence,
)
from probe.fixes import (
    busy_wait_fix,
    computing_fix,
    contention_fix,
    deadlock_fix,
    errors_fix,
    held_blocked_fix,
    hub_blocking_fix,
    rerun_fix,
)
from probe.measurement import Measurement, Runtime, Slices
from probe.model import Verdict

__all__ = ["Judgement", "Signals", "failed_requests", "hub_blocking_fix", "judge", "signals",
           "untrustworthy", "wait_sentence"]



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
        held_blocked=s is not None and _held(s.blocked, s.blocked_share) and _recurs(s),
        computing=s is not None and _held(s.computing, s.computing_share),
        contended=m.contention is not None and m.contention.wait_share >= t.CONTENTION_SHARE)


def _held(count: int, share: float) -> bool:
    return count >= t.MIN_HELD and share >= t.HELD_SHARE


def _recurs(s: Slices) -> bool:
    """Blocking recurs: two bursts of blocked runs at least (thresholds.BURST_GAP_S; a burst
    lasts BURST_MAX_S at most), not one stall of the machine. Results without events (older
    files) are judged as before."""
    bursts = s.blocked_bursts(t.BURST_GAP_S, t.BURST_MAX_S)
    return bursts is None or bursts >= 2


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
            "another greenlet held.", contention_sentence(m)), contention_fix(m.runtime))
    if problems:
        return Judgement("inconclusive", tuple(problems), rerun_fix(m))
    flags = signals(m)
    serialised = flags.serialised
    mismatch = _wait_mismatch(m.runtime, serialised or flags.blocked)
    if mismatch:
        return Judgement("inconclusive", (mismatch, *sentences(m, serialised)),
                         "Run `gevent-probe variants` and this variant again; if they still "
                         "disagree, please report it with results.json.")
    evidence = sentences(m, serialised)
    return dataclasses.replace(_verdict(m, flags, evidence), notes=tuple(findings(m)))


def _verdict(m: Measurement, flags: Signals, evidence: list[str]) -> Judgement:
    serialised = flags.serialised
    if serialised or flags.blocked:
        if serialised and m.http is None:
            evidence.append(latency_paradox(m))
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


def driver_errors(m: Measurement) -> bool:
    """The driver raised on more than 1% of the load's units (the server still answering:
    the variant loop stops the run when it does not)."""
    attempts = m.db.queries + m.db.errors
    return bool(attempts and m.db.errors / attempts > t.MAX_ERROR_RATE
                and m.db.errors_by_message)


def _wait_mismatch(rt: Runtime, blocking: bool) -> str | None:
    """The wait function the process reports must agree with what the probe measured."""
    expected = expected_behaviour(rt)
    if expected is None or (expected == "blocking") == blocking:
        return None
    measured = "blocked the hub" if blocking else "overlapped without blocking the hub"
    return (f"The process reports {rt.driver} waiting with {rt.wait_function}, which "
            f"{'blocks' if expected == 'blocking' else 'does not block'} the hub, yet the "
            f"probe's queries {measured}: the measurement and the driver disagree.")


# -- evidence ------------------------------------------------------------------------------

# -- fixes ---------------------------------------------------------------------------------

