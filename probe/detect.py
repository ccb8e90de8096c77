"""One verdict per variant, with the evidence in sentences and the fix that fits what was seen.

Why these signals: per-query latency timed inside a greenlet *rewards* a driver that blocks
the hub (it never yields, so nothing else runs while it waits). What exposes blocking is
concurrency: C server-side sleeps that should overlap (wall ~ 1 x sleep) run one after
another (wall ~ C x sleep), and the heartbeat greenlet wakes up late. Busy-waiting is a
different disease: the sleeps still overlap, but the process burns a core while it waits.
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.model import Runtime, VariantResult

# Serialised when the sleeps took more than halfway from "all overlap" (1x) to "one by one"
# (Cx). Measured: cooperative drivers 1.03-1.1x, blocking ones 16.4-16.7x at C=16.
SERIAL_FRACTION = 0.5
# CPU time of the hub thread / wall time while every connection waits on pg_sleep.
# Measured: 0.01-0.1 for real drivers, 0.95-1.0 for the spinning control.
BURN_RATIO = 0.5
MIN_QUERIES = 100
LOADGEN_SATURATION = 0.9  # share of one core used by the busiest locust process
MAX_ERROR_RATE = 0.01
PSYCOPG_GEVENT_CHECK = (3, 1, 14)  # first psycopg that avoids wait_c under gevent (PR #688)


@dataclass(frozen=True)
class Judgement:
    verdict: str
    evidence: tuple[str, ...]
    fix: str | None


def serialised_threshold(concurrency: int) -> float:
    return 1 + SERIAL_FRACTION * (concurrency - 1)


def judge(result: VariantResult) -> Judgement:
    problems = _untrustworthy(result)
    if problems:
        return Judgement("inconclusive", tuple(problems), _rerun_fix(result))
    s = result.serialization
    serialised = s.ratio >= serialised_threshold(s.concurrency)
    burning = result.cpu.burn_ratio >= BURN_RATIO
    evidence = [_serialisation_sentence(result, serialised), _cpu_sentence(result),
                _lag_sentence(result)]
    if result.system is not None:
        evidence.insert(0, _system_sentence(result))
    if serialised:
        if result.system is None:
            evidence.append(_latency_paradox(result))
        evidence.append(_wait_sentence(result.runtime))
        return Judgement("hub-blocking", tuple(evidence), hub_blocking_fix(result.runtime))
    if burning:
        evidence.append(_wait_sentence(result.runtime))
        return Judgement("busy-wait", tuple(evidence), busy_wait_fix(result.runtime))
    return Judgement("healthy", tuple(evidence), None)


def _untrustworthy(result: VariantResult) -> list[str]:
    problems = _system_untrustworthy(result)
    attempts = result.latency_ms.count + result.errors
    if attempts and result.errors / attempts > MAX_ERROR_RATE:
        problems.append(f"{result.errors} of {attempts} queries failed "
                        f"({100 * result.errors / attempts:.1f}%), above the 1% we can trust.")
    if result.latency_ms.count < MIN_QUERIES:
        problems.append(f"only {result.latency_ms.count} successful queries; "
                        f"at least {MIN_QUERIES} are needed.")
    if result.serialization.concurrency < 2:
        problems.append("concurrency 1 cannot show serialisation; use --concurrency 2 or more.")
    return problems


def _system_untrustworthy(result: VariantResult) -> list[str]:
    system = result.system
    if system is None:
        return []
    problems = []
    if system.loadgen_saturated:
        problems.append(f"The load generator used {100 * system.loadgen_core_share:.0f}% of a "
                        f"core (limit {100 * LOADGEN_SATURATION:.0f}%): it measured itself, "
                        "not the app.")
    if system.error_rate > MAX_ERROR_RATE:
        problems.append(f"{100 * system.error_rate:.1f}% of HTTP requests failed, above 1%.")
    return problems


def _system_sentence(result: VariantResult) -> str | None:
    system = result.system
    if system is None:
        return None
    parts = [f"{r.name} p50/p99 {r.latency_ms.p50:.1f}/{r.latency_ms.p99:.1f} ms "
             f"({r.requests} requests)" for r in system.routes]
    return (f"Under {system.users} users ({system.scenario}) for {system.duration_s:g} s: "
            f"{system.rps:,.0f} RPS; " + ", ".join(parts) + ".")


def _rerun_fix(result: VariantResult) -> str:
    if result.system is not None and result.system.loadgen_saturated:
        return "Give locust more cores with --locust-processes N, or fewer --users."
    if result.errors:
        return "Look at the first error above, fix the database side, and run again."
    return "Run again with more --queries, a longer --duration or more --concurrency."


def _serialisation_sentence(result: VariantResult, serialised: bool) -> str:
    s = result.serialization
    how = ("they ran one after another: the driver holds the gevent hub while it waits"
           if serialised else "they overlapped, as cooperative waits should")
    return (f"{s.concurrency} concurrent pg_sleep({s.sleep_ms:g} ms) took {s.wall_ms:.0f} ms "
            f"(median of {s.rounds}), {s.ratio:.1f}x the sleep: {how} "
            f"(flagged above {serialised_threshold(s.concurrency):.1f}x).")


def _cpu_sentence(result: VariantResult) -> str:
    burn = result.cpu.burn_ratio
    judgement = "busy-waiting" if burn >= BURN_RATIO else "idle, as a wait should be"
    return (f"While the connections waited, the hub thread used {100 * burn:.0f}% of a core: "
            f"{judgement} (flagged at {100 * BURN_RATIO:.0f}%).")


def _lag_sentence(result: VariantResult) -> str:
    lag, blocks = result.loop_lag_ms, result.hub_blocks
    text = (f"The 1 ms heartbeat greenlet woke up to {lag.max:.1f} ms late (p99 {lag.p99:.2f} ms); "
            f"the hub stalled for more than {blocks.threshold_ms:g} ms {blocks.count} time(s)")
    frame = culprit_frame(blocks.first_frames)
    return text + (f", first in {frame}." if frame else ".")


def culprit_frame(frames: tuple[str, ...]) -> str | None:
    """The innermost 'File ..., line N, in f' of a blocked stack, with its source line."""
    for i in range(len(frames) - 1, -1, -1):
        line = frames[i].strip()
        if line.startswith("File "):
            source = frames[i + 1].strip() if i + 1 < len(frames) else ""
            return f"{line} `{source}`" if source else line
    return None


def _latency_paradox(result: VariantResult) -> str:
    return (f"SELECT 1 looks fast in-greenlet (avg {result.latency_ms.avg:.3f} ms) only because "
            "the driver never yields: per-query latency rewards hub blocking.")


def _wait_sentence(rt: Runtime) -> str:
    if rt.driver == "psycopg2":
        return f"psycopg2 {rt.driver_version} wait callback: {rt.wait_function}."
    why = ""
    if rt.wait_function == "wait_c":
        why = (" because PSYCOPG_WAIT_FUNC=wait_c" if rt.psycopg_wait_func_env == "wait_c"
               else " because gevent had not patched select when psycopg was imported")
    return (f"psycopg {rt.driver_version} ({rt.impl}, libpq {rt.libpq_version}) "
            f"waits with {rt.wait_function}{why}.")


def hub_blocking_fix(rt: Runtime) -> str:
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
        if _version(rt.driver_version) < PSYCOPG_GEVENT_CHECK:
            return (f"Upgrade psycopg to >= 3.1.14 (psycopg issue #527, fixed by PR #688): "
                    f"{rt.driver_version} picks wait_c even under gevent.")
        return ("Call gevent.monkey.patch_all() before anything imports psycopg: psycopg picks "
                "its wait function once, at import. Under gunicorn, don't --preload an app that "
                "imports psycopg at module level (or import it lazily), or set "
                "PSYCOPG_WAIT_FUNC=wait_poll.")
    return ("The hub is blocked by the call in the frames above; make it cooperative "
            "(gevent-aware I/O or gevent.threadpool).")


def busy_wait_fix(rt: Runtime) -> str:
    return (f"The wait function {rt.wait_function} polls without blocking: remove it and let "
            "psycopg use its default under gevent (wait_poll, which blocks in the hub with a "
            "timeout), or wait with gevent.select / gevent.socket.wait_read.")


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)
