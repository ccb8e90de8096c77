"""The one variant loop, for `bench` and `run` alike (and `gate`, `selftest`, `matrix`).

For each repeat, for each variant (interleaved, A B C A B C, so drift hits all alike): measure
it through the mode's transport in a fresh process tree, judge it, and write results.json
again, atomically, so nothing measured is ever lost. One variant failing in any way makes that
variant `inconclusive` with the reason; the others are still measured. If the database itself
stopped answering, the run stops there (`aborted`). Controls that are not flagged as expected
are recorded: the run then cannot be trusted.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from probe import aggregate, detect
from probe import dsn as dsn_mod
from probe.environment import collect_environment
from probe.errors import ProbeError, RunCannotGoOn
from probe.lifecycle import owned_scratch, sweep_stale
from probe.measurement import AppInfo, Measurement
from probe.model import Repeat, RunResult, Unavailable, VariantResult, from_dict, to_dict
from probe.postgres import Database, answers
from probe.settings import Settings
from probe.variants import Variant, select

# progress(step, steps, variant name, state): state is "running", a verdict, or "skipped".
Progress = Callable[[int, int, str, str], None]
Sink = Callable[[RunResult], None]


def run(settings: Settings, database: Database, run_id: str,
        progress: Progress | None = None, sink: Sink | None = None,
        transport: Transport | None = None, app: AppInfo | None = None,
        only: Variant | None = None) -> RunResult:
    """`app`: the user's app (`run --app`) and the drivers it imports, as far as known: by
    default only the variants of those drivers run, with the controls; a variant of a driver
    the app turns out not to use is reported as such, never judged. `only`: the one variant
    there is (run --target: what the deployed app runs)."""
    mode = settings.measuring_mode
    chosen = (only,) if only is not None else select(settings.variants, mode)
    skipped: dict[str, Unavailable] = {}
    if app is not None and settings.variants is None:
        skipped = {v.name: not_used(v, app) for v in chosen if _unused(v, app)}
        chosen = tuple(v for v in chosen if v.name not in skipped)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    measured: dict[str, list[Measurement]] = {}
    times: dict[str, list[str]] = {}
    aborted: str | None = None
    steps = len(chosen) * settings.repeats
    environment = collect_environment(database)

    def assemble(complete: bool) -> RunResult:
        if app is not None:  # drivers the app imported lazily are known once it has run
            for v in chosen:
                if measured.get(v.name) and _unused(v, app):
                    del measured[v.name]
                    skipped[v.name] = not_used(v, app)
        result = RunResult(
            run_id=run_id, mode=mode, command=settings.command_line(),
            started=started.isoformat(timespec="seconds"),
            duration_s=round(time.perf_counter() - t0, 2), complete=complete,
            environment=environment, settings=settings.public(),
            variants=tuple(_variant_result(v, measured[v.name], times[v.name], settings)
                           for v in chosen if measured.get(v.name)),
            skipped=tuple(skipped.values()), aborted=aborted, app=app)
        result = dataclasses.replace(result, control_problems=control_problems(result))
        return scrub(result, database.dsn)

    sweep_stale()
    with owned_scratch("gevent-probe-run-") as tmp:
        transport = transport or _transport(settings, database, tmp)
        step = 0
        for repeat in range(settings.repeats):
            for variant in chosen:
                if variant.name in skipped:
                    continue
                if app is not None and _unused(variant, app):
                    skipped[variant.name] = not_used(variant, app)
                    continue
                step += 1
                label = _label(variant, repeat, settings)
                _tell(progress, step, steps, label, "running")
                try:
                    outcome = _measure(transport, variant, database,
                                       functools.partial(_tell, progress, step, steps, label))
                except RunCannotGoOn as ex:
                    aborted = f"{ex} (nothing was measured from {variant.name} on)"
                    break
                if isinstance(outcome, Unavailable):
                    skipped[variant.name] = outcome
                    _tell(progress, step, steps, variant.name, "skipped")
                    continue
                measured.setdefault(variant.name, []).append(outcome)
                times.setdefault(variant.name, []).append(
                    datetime.now(UTC).isoformat(timespec="seconds"))
                if app is not None:
                    app = _learned(app, outcome)
                verdict = detect.judge(outcome, own_app=bool(settings.app)).verdict
                _tell(progress, step, steps, label, verdict)
                if verdict == "inconclusive" and database.dsn and not answers(database.dsn):
                    aborted = (f"PostgreSQL stopped answering while {variant.name} was "
                               "measured; the variants after it were not measured.")
                elif every_request_failed(outcome) and outcome.http is not None:
                    aborted = (f"every request to the app failed under {variant.name}, so "
                               "nothing after it was measured: "
                               f"{detect.failed_requests(outcome.http)}.")
                if sink is not None:
                    sink(assemble(complete=False))
                if aborted:
                    break
            if aborted:
                break
    return assemble(complete=aborted is None)


def _unused(variant: Variant, app: AppInfo) -> bool:
    """A variant of a driver the app does not use: nothing it measures concerns the app.
    Controls prove the detectors whatever the app; `preload` is the app under --preload."""
    if variant.is_control(own_app=True) or variant.preload or not app.drivers:
        return False
    return not app.uses(variant.driver)


def not_used(variant: Variant, app: AppInfo) -> Unavailable:
    return Unavailable(variant.name, f"not used by your app: {app.described()}",
                       "name the variants of the drivers it uses (--variants), or none")


def _learned(app: AppInfo, outcome: Measurement) -> AppInfo:
    """The app's drivers, with the ones its workers imported during requests."""
    known = {d.module for d in app.drivers}
    new = tuple(d for d in outcome.app_drivers if d.module not in known)
    return dataclasses.replace(app, drivers=app.drivers + new) if new else app


def every_request_failed(m: Measurement) -> bool:
    """The app answered no request at all: measuring more variants would only repeat it."""
    if m.http is None:
        return False
    requests = sum(r.requests for r in m.http.routes)
    return requests > 0 and sum(r.failures for r in m.http.routes) == requests


def _label(variant: Variant, repeat: int, settings: Settings) -> str:
    return variant.name if settings.repeats == 1 else \
        f"{variant.name} (repeat {repeat + 1}/{settings.repeats})"


def _tell(progress: Progress | None, step: int, steps: int, name: str, state: str) -> None:
    if progress is not None:
        progress(step, steps, name, state)


class Transport(Protocol):
    """How a variant is measured: in a worker process (bench) or through gunicorn and locust
    (run). The meaning of what comes back is the same; only the way there differs."""

    def measure(self, variant: Variant,
                phase: Callable[[str], None]) -> Measurement | Unavailable: ...


def _transport(settings: Settings, database: Database, workdir: Path) -> Transport:
    if settings.measuring_mode == "run":
        from probe.run_transport import HttpTransport

        return HttpTransport(settings, database.dsn, workdir)
    from probe.bench_transport import BenchTransport

    return BenchTransport(settings, database.dsn)


def _measure(transport: Transport, variant: Variant, database: Database,
             phase: Callable[[str], None]) -> Measurement | Unavailable:
    """One measurement; whatever goes wrong becomes the variant's reason, never a traceback."""
    try:
        return transport.measure(variant, phase)
    except RunCannotGoOn:
        raise
    except ProbeError as ex:
        reason = str(ex)
    except Exception as ex:  # a bug of ours must cost one variant, not the run
        reason = f"unexpected {type(ex).__name__} while measuring: {ex}".splitlines()[0]
    return aggregate.failed(variant, dsn_mod.scrub(reason, database.dsn))


def _variant_result(variant: Variant, measurements: list[Measurement], started: list[str],
                    settings: Settings) -> VariantResult:
    own_app = bool(settings.app)
    judgements = [detect.judge(m, own_app) for m in measurements]
    merged = aggregate.merge(measurements)
    overall = detect.judge(merged, own_app)
    verdicts = [j.verdict for j in judgements]
    if len(set(verdicts)) > 1:
        counts = ", ".join(f"{v} x{verdicts.count(v)}" for v in dict.fromkeys(verdicts))
        overall = detect.Judgement(
            "inconclusive", (f"The {len(verdicts)} repeats disagree ({counts}).",
                             *overall.evidence),
            "Run again on a quieter machine, or with more --repeat.")
    elif overall.verdict != verdicts[0]:
        overall = judgements[len(judgements) // 2]
    control = variant.is_control(own_app)
    return VariantResult(
        name=variant.name, control=control, expected=variant.expected if control else None,
        verdict=overall.verdict, evidence=overall.evidence, fix=overall.fix, measured=merged,
        notes=detect.judge(merged, own_app).notes,
        repeats=tuple(Repeat(verdict=j.verdict, serialization_ratio=m.serialization.ratio,
                             histograms={k: v for k, v in m.histograms.items()
                                         if k == "db" or k.startswith("http:")},
                             started=when)
                      for j, m, when in zip(judgements, measurements, started, strict=True)))


def control_problems(result: RunResult) -> tuple[str, ...]:
    """Controls prove the detectors work here; one with the wrong verdict voids the run."""
    return tuple(f"{r.name} gave {r.verdict}, expected {r.expected}"
                 for r in result.variants if r.control and r.verdict != r.expected)


def scrub(result: RunResult, dsn: str) -> RunResult:
    """The result with the DSN's password removed from every string it holds (driver errors
    and stack frames can quote a DSN)."""
    if dsn_mod.password_of(dsn) is None:
        return result
    return from_dict(RunResult, _scrub_tree(to_dict(result), dsn))


def _scrub_tree(node: Any, dsn: str) -> Any:
    if isinstance(node, str):
        return dsn_mod.scrub(node, dsn)
    if isinstance(node, dict):  # encoded histograms are data, not text: a short password
        return {k: v if k == "histograms" or k.endswith("_hdr") else _scrub_tree(v, dsn)
                for k, v in node.items()}  # can occur in their base64 by chance
    if isinstance(node, list):
        return [_scrub_tree(v, dsn) for v in node]
    return node
