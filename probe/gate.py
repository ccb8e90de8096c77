"""The CI gate: checks on a run's results and the exit code they mean (probe.report.ci writes
them as JUnit and a step summary).

Checks come from flags or from `[tool.gevent-probe.gate]`:
- verdict: a variant whose verdict is in --fail-on fails (default: every pathology, and
  inconclusive: a gate that cannot tell must not pass);
- max-p99 / max-avg: SELECT 1 in bench, every route (or the routes named) in run;
- p99 ratio against a baseline variant of the same run, or p99 and p50 ratios against a
  saved baseline file, through probe.compare: a variant whose whole interval (and every
  repeat) is above the limit becomes `regressed`; an undecided comparison passes unless
  --on-undecided fail.
A check on a variant or route that does not exist is an error (exit 2), never a silent pass.
A variant that could not run here (a driver missing) fails its `available` check. Controls
that run without being named (no --variants) prove the detectors work here: one that is not
flagged as expected makes the gate untrustworthy (exit 2), whatever the checks say; with
--variants, run `gevent-probe selftest` first for that proof.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probe import stats
from probe.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ProbeError
from probe.model import CheckResult, RunResult, VariantResult
from probe.report.text import short_wait
from probe.settings import Settings, parse_limits

if TYPE_CHECKING:
    from probe.compare import RatioComparison, Stat

DEFAULT_RATIO = 1.2
COMPARED_ENVIRONMENT = ("cpu_count",)
COMPARED_PACKAGES = ("psycopg", "psycopg-binary", "psycopg-c", "psycopg2", "psycopg2-binary",
                     "gevent", "greenlet")


@dataclass(frozen=True)
class GateOutcome:
    result: RunResult  # verdicts after the comparisons, and the checks
    exit_code: int
    failures: tuple[str, ...]  # one line per failed check
    notes: tuple[str, ...]  # what the reader should know (a baseline from elsewhere...)


def evaluate(result: RunResult, settings: Settings,
             baseline: RunResult | None = None) -> GateOutcome:
    if baseline is not None and baseline.mode != result.mode:
        raise ProbeError(f"the baseline was measured by {baseline.mode}, this run by "
                         f"{result.mode}: their latencies are not comparable")
    named = _named(settings, result)
    checks: list[CheckResult] = []
    variants = []
    compared = []
    for variant in result.variants:
        if variant.name not in named:
            variants.append(variant)
            if variant.control:  # proof of the detectors; the others were not asked for
                checks.append(_control_check(variant))
            continue
        outcome = _compared(variant, result, settings, baseline)
        compared.append(outcome)
        variants.append(outcome.variant)
        checks.append(_verdict_check(outcome.variant, settings, baseline))
        checks += outcome.checks
        checks += _latency_checks(outcome.variant, result.mode, settings)
    checks += [CheckResult(u.name, "available", False, f"could not run here: {u.reason} "
                           f"(install: {u.hint})") for u in result.skipped if u.name in named]
    judged = dataclasses.replace(result, variants=tuple(variants), checks=tuple(checks))
    failures = tuple(f"{c.variant}: {c.check}: {c.detail}" for c in checks if not c.passed)
    notes = (*environment_notes(result, baseline), *runs_notes(baseline),
             *resolution_notes(compared, settings.max_p99_ratio or DEFAULT_RATIO,
                               settings.on_undecided))
    code = EXIT_USAGE if not result.trusted else EXIT_FAILED if failures else EXIT_OK
    return GateOutcome(judged, code, failures, notes)


def _named(settings: Settings, result: RunResult) -> set[str]:
    """The variants the checks apply to: those the user named, else every non-control one."""
    measured = {v.name for v in result.variants} | {u.name for u in result.skipped}
    if settings.variant_names:
        names = set(settings.variant_names)
        missing = names - measured
        if missing:
            raise ProbeError(f"no results for variant(s) {', '.join(sorted(missing))} to check")
        return names
    return {v.name for v in result.variants if not v.control} | {u.name for u in result.skipped}


def _control_check(v: VariantResult) -> CheckResult:
    ok = v.verdict == v.expected
    return CheckResult(v.name, "control", ok, f"{v.verdict}, expected {v.expected}" +
                       ("" if ok else ": the detectors cannot be trusted here"))


def _verdict_check(v: VariantResult, settings: Settings,
                   baseline: RunResult | None) -> CheckResult:
    passed = v.verdict not in settings.fail_on_verdicts
    detail = f"{v.verdict} ({_what_ran(v)})"
    before = _find(baseline, v.name) if baseline else None
    if before is not None:
        detail += f"; the baseline had {before.verdict} ({_what_ran(before)})"
    if not passed and v.evidence:
        detail += f": {v.evidence[0]}"
    return CheckResult(v.name, "verdict", passed, detail)


def _what_ran(v: VariantResult) -> str:
    rt = v.measured.runtime
    return f"{rt.driver} {rt.driver_version} {rt.impl}, {short_wait(rt.wait_function)}"


def _latency_checks(v: VariantResult, mode: str, settings: Settings) -> list[CheckResult]:
    checks = []
    for flag, stat, limits in (("max-p99", "p99", parse_limits(settings.max_p99, "--max-p99")),
                               ("max-avg", "avg", parse_limits(settings.max_avg, "--max-avg"))):
        for name, latency in _latencies(v, mode, limits, flag):
            limit = limits.get(name, limits.get(None))
            if limit is None:
                continue
            value = getattr(latency, stat)
            label = flag if mode == "bench" else f"{flag}:{name}"
            checks.append(CheckResult(v.name, label, value <= limit,
                                      f"{stat} {value:.3f} ms, limit {limit:g} ms",
                                      value=value, limit=limit))
    return checks


def _latencies(v: VariantResult, mode: str, limits: dict[str | None, float],
               flag: str) -> list[tuple[str | None, object]]:
    if mode == "bench":
        unknown = [r for r in limits if r is not None]
        if unknown:
            raise ProbeError(f"{flag}: bench has no routes ({', '.join(unknown)}): give MS")
        return [(None, v.measured.db.latency_ms)]
    routes = {r.name: r.latency_ms for r in (v.measured.http.routes if v.measured.http else ())}
    unknown = [r for r in limits if r is not None and r not in routes]
    if unknown and routes:
        raise ProbeError(f"{flag}: no route {', '.join(unknown)} in the results of {v.name} "
                         f"(routes: {', '.join(sorted(routes))})")
    return sorted(routes.items())


# -- comparisons ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Compared:
    """One variant after its p99 comparison: maybe `regressed`, and the checks that say why."""

    variant: VariantResult
    checks: tuple[CheckResult, ...] = ()
    comparisons: tuple[tuple[str, RatioComparison], ...] = ()  # (what, comparison)


def _compared(v: VariantResult, result: RunResult, settings: Settings,
              baseline: RunResult | None) -> Compared:
    """The variant, `regressed` when its p99 is above the limit beyond the noise, and a
    p99-ratio check for every latency both sides recorded; against a saved baseline (the
    same variant, earlier) a p50-ratio check too: the median moves with every request's own
    cost where a shared runner's p99 swings between runs (probe.compare). Across drivers of
    one run only the tail is compared: their medians differ by design."""
    if baseline is None and settings.max_p99_ratio is None:
        return Compared(v)
    limit = settings.max_p99_ratio or DEFAULT_RATIO
    if baseline is not None:
        reference = _find(baseline, v.name)
        if reference is None:
            raise ProbeError(f"the baseline has no variant {v.name} to compare with")
        against = f"the baseline's {v.name}"
    else:
        if v.name == settings.baseline_variant:
            return Compared(v)
        reference = _find(result, settings.baseline_variant)
        if reference is None:
            raise ProbeError(f"no results for the baseline variant {settings.baseline_variant} "
                             "(--baseline-variant)")
        against = settings.baseline_variant
    if v.verdict != "healthy":
        return Compared(v)  # already a finding: the comparison would only repeat it
    if reference.verdict != "healthy":
        raise ProbeError(f"{against} is {reference.verdict}: its p99 is no reference "
                         "(a driver that blocks the hub looks fast in-greenlet)")
    keys = _latency_keys(v, reference)
    if not keys:
        raise ProbeError(f"{v.name} and {against} recorded no latency in common to compare")
    from probe import compare  # scipy: only for a gate that compares

    runs = [r.run_id for r in reference.repeats]
    held: tuple[Stat, ...] = ("p50", "p99") if baseline is not None else ("p99",)
    found = tuple((_latency_name(key), compare.compare_ratio(
        _per_repeat(v, key), _per_repeat(reference, key), limit, runs, stat))
        for key in keys for stat in held)
    checks = tuple(CheckResult(
        v.name, f"{c.stat}-ratio" if result.mode == "bench" else f"{c.stat}-ratio:{what}",
        c.outcome == "pass" or (c.outcome == "undecided" and settings.on_undecided == "pass"),
        f"{c.outcome}: {what} {c.reason}, against {against}",
        value=round(c.ratio.value, 3), limit=limit) for what, c in found)
    regressed = [(what, c) for what, c in found if c.outcome == "regressed"]
    if not regressed:
        return Compared(v, checks, found)
    what, worst = max(regressed, key=lambda wc: wc[1].ratio.low)
    sentence = (f"{what} {worst.reason}, against {against} ({_what_ran(reference)}; now "
                f"{_what_ran(v)}).")
    fix = ("Compare what changed between the two runs (driver versions above, your app's "
           "code); `gevent-probe matrix` finds the release that changed it.")
    return Compared(dataclasses.replace(v, verdict="regressed", evidence=(sentence, *v.evidence),
                                        fix=fix), checks, found)


def resolution_notes(compared: Sequence[Compared], limit: float,
                     on_undecided: str) -> list[str]:
    """Once per gate: when the limit asked for is finer than what the repeats can resolve on
    this machine, say what they resolve, what that means, and what would resolve the limit."""
    from probe import compare

    coarse = [(c.variant.name, what, cmp) for c in compared for what, cmp in c.comparisons
              if cmp.resolution is not None and cmp.resolution >= limit]
    if not coarse:
        return []
    name, what, worst = max(coarse, key=lambda x: (x[2].resolution or 0.0, x[2].stat == "p99"))
    assert worst.resolution is not None
    spread = (f"{min(worst.reference_ms):.2f}-{max(worst.reference_ms):.2f} ms over its "
              f"{len(worst.reference_ms)} repeats")
    needed = compare.repeats_to_resolve(worst.resolution, min(worst.repeats), limit)
    more = ("; the noise between runs does not shrink with more of them: a quieter machine, "
            "or a wider limit, would" if worst.runs > 1 else
            f"; about {needed} repeats a side would resolve {limit:g}x"
            if needed and needed <= compare.MAX_REPEATS_SUGGESTED else
            "; a quieter machine, or a wider limit, would")
    unit = f"{worst.runs} runs of the baseline" if worst.runs > 1 else "these repeats"
    undecided = sum(cmp.outcome == "undecided" for _, _, cmp in coarse)
    then = "pass" if on_undecided == "pass" else "fail (--on-undecided fail)"
    outcome = (f"{undecided} comparison(s) stayed undecided, which {then}" if undecided else
               "a comparison passes only well below it")
    return [f"The ratio limit {limit:g}x is finer than this machine resolves with {unit}: "
            f"about {worst.resolution:.2f}x either way ({name} {what} {worst.stat}: the "
            f"reference's {worst.stat} ranged {spread}), so {outcome}; a slowdown shows as "
            f"regressed only past about {limit * worst.resolution:.2f}x{more}."]


def _latency_name(key: str) -> str:
    return "SELECT 1" if key == "db" else key.removeprefix("http:")


def _latency_keys(v: VariantResult, reference: VariantResult) -> list[str]:
    """The latencies both sides recorded: an app that times no SELECT 1 of its own (--app)
    has an empty "db" histogram, which says nothing either way."""
    mine = {k for r in v.repeats for k in r.histograms}
    theirs = {k for r in reference.repeats for k in r.histograms}
    return sorted(k for k in mine & theirs
                  if _recorded(_per_repeat(v, k)) and _recorded(_per_repeat(reference, k)))


def _recorded(encoded: list[str]) -> int:
    count: int = stats.merge(encoded).get_total_count()
    return count


def _per_repeat(v: VariantResult, key: str) -> list[str]:
    return [r.histograms.get(key, "") for r in v.repeats] or [v.measured.histograms.get(key, "")]


def _find(result: RunResult | None, name: str) -> VariantResult | None:
    return next((v for v in result.variants if v.name == name), None) if result else None


def runs_notes(baseline: RunResult | None) -> tuple[str, ...]:
    """Once per gate: a baseline of fewer runs than the noise between runs needs."""
    from probe.baseline import MIN_RUNS, runs_of

    if baseline is None:
        return ()
    held = max((len(runs_of(v.repeats)) for v in baseline.variants), default=0)
    if held >= MIN_RUNS:
        return ()
    return (f"The baseline holds {held} run(s): the comparison sees the noise between the "
            "repeats of one run, not between runs (a quiet or busy minute moves a whole run); "
            f"from {MIN_RUNS} runs it does. Each --save-baseline onto the same file adds a "
            "run (--baseline-runs, default 5): save it on every build of main.",)


def environment_notes(result: RunResult, baseline: RunResult | None) -> tuple[str, ...]:
    """Where the baseline's machine differs from this one: comparisons across them are weak."""
    if baseline is None:
        return ()
    notes = []
    now, then = result.environment, baseline.environment
    for key in COMPARED_ENVIRONMENT:
        if now.get(key) != then.get(key):
            notes.append(f"{key}: {then.get(key)} in the baseline, {now.get(key)} here")
    pg_now = str(now.get("postgresql", {}).get("version", "")).split(".")[0]
    pg_then = str(then.get("postgresql", {}).get("version", "")).split(".")[0]
    if pg_now != pg_then:
        notes.append(f"PostgreSQL major: {pg_then} in the baseline, {pg_now} here")
    for name in COMPARED_PACKAGES:
        a, b = then.get("packages", {}).get(name), now.get("packages", {}).get(name)
        if a != b:
            notes.append(f"{name}: {a or 'absent'} in the baseline, {b or 'absent'} here")
    if notes:
        notes.insert(0, "The baseline comes from a different environment:")
    return tuple(notes)
