"""The diagnostic report ops attach to tickets: report.md and one self-contained report.html.

Both are rendered by jinja2 templates from the same view of the results, built here; the
figures come from probe.report.plots, imported only when HTML is rendered, so importing this
package costs no matplotlib. Several results make a comparison (before/after a change, two
machines, two driver versions): variants are matched by name and the first result is the
reference the others are measured against.

Every string a template prints goes through dsn.redact: results are scrubbed when they are
written, and the report must not be where a password comes back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from probe import detect, dsn, thresholds
from probe.errors import ProbeError
from probe.model import (
    CheckResult,
    HeldSlice,
    MatrixResult,
    RunResult,
    StallEvent,
    VariantResult,
)
from probe.results import write_text

TEMPLATES = Path(__file__).parent / "templates"
LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_EVENTS_SHOWN = 100  # per variant; the timeline draws them all
NOTABLE_P99_CHANGE = 0.2  # the gate's default --max-p99-ratio (1.2): below it, mostly noise
PROBLEM_NOUNS = {"hub-blocking": "hub blocking", "busy-wait": "busy-waiting",
                 "computing": "computing without yielding", "deadlock": "a deadlock",
                 "errors": "driver errors",
                 "contention": "connection contention", "regressed": "a latency regression",
                 "inconclusive": "no conclusion"}
# Where the embedded server listened: differs on every run, says nothing about the machine.
EPHEMERAL_ENVIRONMENT = ("database", "postgresql.where")


# -- the view the templates render -----------------------------------------------------------

@dataclass(frozen=True)
class Banner:
    level: str  # "good", "info", "warn" or "bad": the banner's colour
    text: str  # one sentence
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    text: str
    flagged: bool = False  # at or past the threshold that flags it
    title: str = ""


@dataclass(frozen=True)
class Row:
    variant: VariantResult
    driver: str
    wait: str
    cells: tuple[Cell, ...]  # one per RunView.headers


@dataclass(frozen=True)
class Finding:
    variant: VariantResult
    note: str
    as_expected: bool  # a control flagged as it should be: evidence the detectors work


@dataclass(frozen=True)
class StallView:
    """Who held the hub in one variant: its longest runs, and when the heartbeat woke late."""

    variant: VariantResult
    events: tuple[tuple[str, str, str], ...]  # (when, ms, kind), the first MAX_EVENTS_SHOWN
    hidden: int  # events not listed
    longest: tuple[tuple[str, HeldSlice], ...]  # (when, slice)


@dataclass(frozen=True)
class RunView:
    label: str  # "" alone, "A", "B"... when comparing
    result: RunResult
    banner: Banner
    headers: tuple[tuple[str, str], ...]  # (header, what it means)
    rows: tuple[Row, ...]
    findings: tuple[Finding, ...]
    stalls: tuple[StallView, ...]
    controls: tuple[tuple[str, str, str, bool], ...]  # (name, expected, verdict, ok)
    notes: tuple[str, ...]  # why some numbers deserve less trust
    checks: tuple[CheckResult, ...]  # failures first
    environment: tuple[tuple[str, str], ...]
    packages: tuple[tuple[str, str], ...]
    settings: tuple[tuple[str, str], ...]

    @property
    def title(self) -> str:
        return f"{self.label}: {self.result.run_id}" if self.label else self.result.run_id


@dataclass(frozen=True)
class Compared:
    """One variant of one result, in the comparison table."""

    verdict: str
    driver: str
    wait: str
    p99: tuple[tuple[str, str], ...]  # (what, "12.3 ms (+20%)")
    throughput: str


@dataclass(frozen=True)
class ComparedRow:
    name: str
    cells: tuple[Compared | None, ...]  # one per result; None where it was not measured
    changes: tuple[str, ...]

    @property
    def verdict_changed(self) -> bool:
        return len({c.verdict for c in self.cells if c is not None}) > 1


@dataclass(frozen=True)
class Comparison:
    rows: tuple[ComparedRow, ...]
    environment: tuple[tuple[str, tuple[str, ...], bool], ...]  # (key, values, differ)


# -- public API ------------------------------------------------------------------------------

def render_markdown(results: Sequence[RunResult | MatrixResult]) -> str:
    """report.md: banner, variant table, findings with fixes, how to reproduce."""
    if _matrix(results):
        return _template("matrix.md.j2", autoescape=False).render(_matrix_context(_one(results)))
    return _template("report.md.j2", autoescape=False).render(_context(_runs(results)))


def render_html(results: Sequence[RunResult | MatrixResult]) -> str:
    """report.html: everything in one file that renders with no network."""
    if _matrix(results):
        return _template("matrix.html.j2", autoescape=True).render(_matrix_context(_one(results)))
    from probe.report import plots  # matplotlib only when figures are drawn

    context = _context(_runs(results))
    context.update(_figures(context["runs"], context["names"], plots))
    return _template("report.html.j2", autoescape=True).render(context)


def write_reports(results: Sequence[RunResult | MatrixResult],
                  folder: Path) -> tuple[Path, Path]:
    """Write report.md and report.html into `folder`, each atomically."""
    md = write_text(folder / "report.md", render_markdown(results))
    html = write_text(folder / "report.html", render_html(results))
    return md, html


# -- the version matrix ----------------------------------------------------------------------

@dataclass(frozen=True)
class MatrixCell:
    verdict: str
    detail: str  # p99, sleeps, wait function


@dataclass(frozen=True)
class MatrixRow:
    version: str
    unavailable: str | None
    cells: tuple[MatrixCell | None, ...]


def _one(results: Sequence[RunResult | MatrixResult]) -> MatrixResult:
    (matrix,) = results  # _matrix() allows one
    assert isinstance(matrix, MatrixResult)
    return matrix


def _runs(results: Sequence[RunResult | MatrixResult]) -> list[RunResult]:
    return [r for r in results if isinstance(r, RunResult)]  # _matrix() refused a mix


def _matrix(results: Sequence[RunResult | MatrixResult]) -> bool:
    kinds = {isinstance(r, MatrixResult) for r in results}
    if kinds == {True} and len(results) > 1:
        raise ProbeError("one matrix at a time: a matrix already compares versions")
    if len(kinds) > 1:
        raise ProbeError("a matrix cannot be compared with a bench or run result")
    return kinds == {True}


def _matrix_context(m: MatrixResult) -> dict[str, Any]:
    names: list[str] = []
    for version in m.versions:
        names += [v.name for v in version.variants if v.name not in names]
    rows = []
    for version in m.versions:
        found = {v.name: v for v in version.variants}
        rows.append(MatrixRow(version.version, version.unavailable, tuple(
            MatrixCell(v.verdict, f"p99 {fmt_ms(v.measured.db.latency_ms.p99)} ms, "
                                  f"{v.measured.serialization.ratio:.1f}x, "
                                  f"{short_wait(v.runtime.wait_function)}")
            if (v := found.get(name)) else None for name in names)))
    if m.transitions:
        moves = "; ".join(f"{t.variant} {t.from_verdict} → {t.to_verdict} between "
                          f"{t.from_version} and {t.to_version}" for t in m.transitions)
        banner_ = Banner("bad", f"Verdicts changed: {moves}.")
    else:
        banner_ = Banner("good", f"The same verdicts in every tested version of {m.package}.")
    version = m.environment.get("packages", {}).get("gevent-probe", "")
    return {"m": m, "names": names, "rows": rows, "banner": banner_,
            "generated_by": f"gevent-probe {version}".strip()}


# -- templates -------------------------------------------------------------------------------

def _template(name: str, autoescape: bool) -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, finalize=_redacted,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(md=md_text, cell=md_cell, code=code_spans, ms=fmt_ms, pct=fmt_pct)
    return env.get_template(name)


def _redacted(value: Any) -> Any:
    """Every printed value, with any DSN password replaced by ***. Markup is left alone: it
    comes from macros and filters whose own text already went through here or `code_spans`
    (redacting after escaping could swallow a closing tag along with a password)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return dsn.redact(value)
    return value


def code_spans(text: str) -> Markup:
    """HTML for a sentence whose `backquoted` parts are code: redacted, escaped, then the
    backquotes become <code> elements."""
    escaped = str(escape(dsn.redact(str(text))))
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _context(results: Sequence[RunResult]) -> dict[str, Any]:
    results = list(results)
    if not results:
        raise ProbeError("no results to report")
    if len(results) > len(LABELS):
        raise ProbeError(f"at most {len(LABELS)} results in one report, not {len(results)}")
    labels = [LABELS[i] if len(results) > 1 else "" for i in range(len(results))]
    runs = [_run_view(label, r) for label, r in zip(labels, results, strict=True)]
    names: list[str] = []
    for r in results:
        names += [v.name for v in r.variants if v.name not in names]
    comparison = _comparison(results, names) if len(results) > 1 else None
    return {"runs": runs, "names": names, "comparison": comparison,
            "banner": _comparison_banner(runs, comparison) if comparison else runs[0].banner,
            "generated_by": _generated_by(results[-1])}


def _figures(runs: Sequence[RunView], names: Sequence[str], plots: Any) -> dict[str, Any]:
    labelled = [plots.Labelled(run.label, run.result) for run in runs]
    colours = plots.variant_colours(names)
    timelines = []
    for name in names:
        per_run = [(run.label, _find(run.result, name)) for run in runs]
        svg = plots.timeline(name, per_run, colours)
        if svg:
            timelines.append((name, Markup(svg)))
    latency = plots.latency_percentiles(labelled, colours)
    signals = plots.thresholds_chart(labelled, names)
    return {"colours": colours, "timelines": timelines,
            "latency_svg": Markup(latency) if latency else None,
            "signals_svg": Markup(signals) if signals else None}


# -- one result ------------------------------------------------------------------------------

def _run_view(label: str, result: RunResult) -> RunView:
    headers, rows = _table(result)
    return RunView(
        label=label, result=result, banner=banner(result), headers=headers, rows=rows,
        findings=tuple(_findings(result)),
        stalls=tuple(_stall_view(result, v) for v in result.variants
                     if v.measured.stalls.events or (v.measured.slices and
                                                     v.measured.slices.longest)),
        controls=tuple((v.name, v.expected or "-", v.verdict, v.verdict == v.expected)
                       for v in result.variants if v.control),
        notes=tuple(_notes(result)),
        checks=tuple(sorted(result.checks, key=lambda c: c.passed)),
        environment=tuple(_flat(result.environment, skip=("packages",))),
        packages=tuple(sorted((k, str(v)) for k, v in
                              result.environment.get("packages", {}).items())),
        settings=tuple(_flat(result.settings)),
    )


def banner(result: RunResult) -> Banner:
    """The one sentence at the top: all healthy, or what is wrong and where."""
    variants = [v for v in result.variants if not v.control]
    controls = [v for v in result.variants if v.control]
    problems = [v for v in variants if v.verdict != "healthy"]
    details = []
    if result.control_problems:
        details.append("Controls not flagged as expected: " + "; ".join(result.control_problems)
                       + ". The detectors cannot be trusted on this machine.")
    if not result.complete and not result.aborted:
        details.append("The run did not complete: these results are partial.")
    if result.aborted:
        return Banner("bad", f"The run was aborted before measuring every variant: "
                      f"{result.aborted}", tuple(details))
    if problems:
        level = "warn" if all(v.verdict == "inconclusive" for v in problems) else "bad"
        who = f"{len(problems)} of {len(variants)} variants" if len(variants) > 1 else \
            "The only variant"
        verb = "need" if len(problems) > 1 else "needs"
        return Banner(level, f"{who} {verb} attention: {_problem_list(problems)}.",
                      tuple(details))
    level = "warn" if result.control_problems or not result.complete else "good"
    if not variants:
        return Banner("warn" if result.control_problems else "info",
                      f"Only controls ran: {_controls_phrase(result, controls)}.",
                      tuple(details))
    text = f"All {len(variants)} variant{'s' if len(variants) != 1 else ''} healthy under gevent"
    if controls:
        text += f"; {_controls_phrase(result, controls)}"
    return Banner(level, text + ".", tuple(details))


def _problem_list(problems: Sequence[VariantResult]) -> str:
    """"hub blocking in psycopg2 and preload; busy-waiting in x", grouped by verdict."""
    by_verdict: dict[str, list[str]] = {}
    for v in problems:
        by_verdict.setdefault(v.verdict, []).append(v.name)
    return "; ".join(f"{PROBLEM_NOUNS.get(verdict, verdict)} in {_and(names)}"
                     for verdict, names in by_verdict.items())


def _controls_phrase(result: RunResult, controls: Sequence[VariantResult]) -> str:
    if not controls:
        return "no controls ran"
    failed = [v for v in controls if v.verdict != v.expected]
    if failed or result.control_problems:
        return (f"{len(failed) or len(result.control_problems)} of {len(controls)} controls "
                "were not flagged as expected, so the detectors cannot be trusted here")
    which = f"all {len(controls)} controls" if len(controls) > 1 else "the control"
    return f"{which} flagged as expected, so the detectors work here"


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _table(result: RunResult) -> tuple[tuple[tuple[str, str], ...], tuple[Row, ...]]:
    """Columns for the mode: what users felt (RPS and each route in run, SELECT 1 in bench),
    then the probe's signals, which are the same in both modes."""
    if result.mode == "run":
        routes = _routes(result)
        headers = [("RPS", "HTTP requests per second under load")]
        headers += [(f"{r} ms avg / p99", f"HTTP route {r}, end to end") for r in routes]
    else:
        routes = []
        headers = [("SELECT 1 ms avg / p99", "timed in-greenlet, under load"),
                   ("QPS", "SELECT 1 per second")]
    headers += [
        ("sleeps", "concurrent pg_sleep: wall time / sleep; ~1x overlapped, ~Nx serialised"),
        ("blocked ms", "median time a probe query held the hub while off-CPU (flagged from "
         f"{thresholds.BLOCKED_MS:g} ms)"),
        ("CPU burn", "hub-thread CPU while every connection waits (flagged from "
         f"{100 * thresholds.BURN_RATIO:.0f}%)"),
        ("held", "share of the load in greenlet runs past the stall threshold, blocked or "
         f"computing (flagged from {100 * thresholds.HELD_SHARE:.0f}% of either and "
         f"{thresholds.MIN_HELD} runs)"),
        ("busy", "share of the load the greenlets ran: near 100% is a saturated worker, "
         "whose requests queue although nothing holds the hub"),
        ("lock wait", "share of driver time waiting for a connection another greenlet held "
         f"(flagged from {100 * thresholds.CONTENTION_SHARE:.0f}%)"),
    ]
    rows = tuple(_row(v, result.mode, routes) for v in result.variants)
    return tuple(headers), rows


def _routes(result: RunResult) -> list[str]:
    names: list[str] = []
    for v in result.variants:
        http = v.measured.http
        names += [r.name for r in (http.routes if http else ()) if r.name not in names]
    return names


def _row(v: VariantResult, mode: str, routes: Sequence[str]) -> Row:
    m = v.measured
    cells = []
    if mode == "run":
        by_name = {r.name: r for r in (m.http.routes if m.http else ())}
        cells.append(Cell(f"{m.http.rps:,.0f}" if m.http else "–",
                          flagged=bool(m.http and m.http.loadgen_saturated),
                          title="the load generator was saturated" if m.http and
                          m.http.loadgen_saturated else ""))
        for route in routes:
            r = by_name.get(route)
            cells.append(Cell(f"{fmt_ms(r.latency_ms.avg)} / {fmt_ms(r.latency_ms.p99)}"
                              if r else "–", title=f"{r.requests:,} requests" if r else ""))
    else:
        lat = m.db.latency_ms
        cells += [Cell(f"{fmt_ms(lat.avg)} / {fmt_ms(lat.p99)}", title=f"{lat.count:,} queries"),
                  Cell(f"{m.db.qps:,.0f}")]
    s, slices, lock = m.serialization, m.slices, m.contention
    flags = detect.signals(m)
    cells += [
        Cell(f"{s.ratio:.1f}x", flags.serialised, f"flagged from {s.threshold:.1f}x"),
        Cell(fmt_ms(m.blocked_ms.p50), flags.blocked,
             f"max {fmt_ms(m.blocked_ms.max)} ms over {m.blocked_ms.count} queries"),
        Cell(fmt_pct(m.cpu.burn_ratio), flags.burning),
        Cell(fmt_pct(slices.blocked_share + slices.computing_share) if slices else "–",
             flags.held_blocked or flags.computing,
             f"{slices.blocked} blocked, {slices.computing} computing runs over "
             f"{slices.threshold_ms:g} ms" if slices else "not measured (older results)"),
        Cell(fmt_pct(slices.busy_share) if slices else "–",
             title=f"{slices.count:,} greenlet runs" if slices else ""),
        Cell(fmt_pct(lock.wait_share) if lock else "–", flags.contended,
             f"{lock.connections} connections" if lock else "no lock measured"),
    ]
    rt = m.runtime
    return Row(v, driver_label(v), short_wait(rt.wait_function), tuple(cells))


def driver_label(v: VariantResult) -> str:
    rt = v.runtime
    impl = f" {rt.impl}" if rt.driver == "psycopg" else ""  # psycopg 3 ships three builds
    return f"{rt.driver} {rt.driver_version}{impl}"


def _control_note(v: VariantResult) -> str:
    if not v.control:
        return ""
    return "control, as expected" if v.verdict == v.expected else \
        f"control: expected {v.expected}"


def _findings(result: RunResult) -> list[Finding]:
    """Variants that need a reader's attention first, then controls flagged as they should."""
    found = [Finding(v, _control_note(v), v.control and v.verdict == v.expected)
             for v in result.variants
             if v.verdict != "healthy" or (v.control and v.verdict != v.expected) or v.notes]
    return sorted(found, key=lambda f: f.as_expected)


def _stall_view(result: RunResult, v: VariantResult) -> StallView:
    http = v.measured.http
    started = http.started if http else 0.0
    events = sorted(v.measured.stalls.events, key=lambda e: e.t)
    shown = tuple((_when(e, started), fmt_ms(e.ms), e.kind) for e in events[:MAX_EVENTS_SHOWN])
    longest = v.measured.slices.longest if v.measured.slices else ()
    return StallView(v, shown, max(0, len(events) - MAX_EVENTS_SHOWN),
                     tuple((_when(h, started), h) for h in longest))


def _when(e: StallEvent | HeldSlice, started: float) -> str:
    """Seconds into the load when it is known (as on the timeline), else UTC clock time."""
    if started:
        return f"+{e.t - started:.2f} s"
    return datetime.fromtimestamp(e.t, UTC).strftime("%H:%M:%S.%f")[:-3]


def _notes(result: RunResult) -> list[str]:
    notes = []
    for v in result.variants:
        m = v.measured
        notes += [f"{v.name}: {p}" for p in m.problems]
        if m.http and m.http.loadgen_saturated:
            notes.append(f"{v.name}: the load generator used {fmt_pct(m.http.loadgen_core_share)}"
                         " of a core: RPS measures locust, not the app.")
        notes += [f"{v.name}: worker {w.pid} {w.status}" for w in m.workers if w.status != "ok"]
    return notes


def _flat(data: dict[str, Any], prefix: str = "",
          skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    rows = []
    for key, value in data.items():
        if key in skip:
            continue
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}.")
        elif value is not None:
            rows.append((f"{prefix}{key}", str(value)))
    return rows


def _generated_by(result: RunResult) -> str:
    version = result.environment.get("packages", {}).get("gevent-probe", "")
    return f"gevent-probe {version}".strip()


# -- several results -------------------------------------------------------------------------

def _comparison(results: Sequence[RunResult], names: Sequence[str]) -> Comparison:
    rows = []
    for name in names:
        found = [_find(r, name) for r in results]
        reference = next(v for v in found if v is not None)
        cells = tuple(_compared(v, r.mode, reference) if v else None
                      for v, r in zip(found, results, strict=True))
        rows.append(ComparedRow(name, cells, tuple(_changes(found, results))))
    return Comparison(tuple(rows), _environment_table(results))


def _headline_p99(v: VariantResult, mode: str) -> dict[str, float]:
    """What users felt: each HTTP route in run, SELECT 1 in bench."""
    if mode == "run" and v.measured.http:
        return {r.name: r.latency_ms.p99 for r in v.measured.http.routes}
    return {"SELECT 1": v.measured.db.latency_ms.p99}


def _compared(v: VariantResult, mode: str, reference: VariantResult) -> Compared:
    mine = _headline_p99(v, mode)
    theirs = _headline_p99(reference, mode)
    p99 = []
    for what, value in mine.items():
        text = f"{fmt_ms(value)} ms"
        if v is not reference and theirs.get(what):
            text += f" ({_delta(value, theirs[what])})"
        p99.append((what, text))
    http = v.measured.http
    throughput = f"{http.rps:,.0f} RPS" if mode == "run" and http else \
        f"{v.measured.db.qps:,.0f} QPS"
    return Compared(v.verdict, driver_label(v), short_wait(v.runtime.wait_function),
                    tuple(p99), throughput)


def _delta(value: float, reference: float) -> str:
    return f"{100 * (value / reference - 1):+.0f}%"


def _changes(found: Sequence[VariantResult | None],
             results: Sequence[RunResult]) -> list[str]:
    """What differs from the first result that measured this variant."""
    present = [(LABELS[i], v, results[i].mode) for i, v in enumerate(found) if v is not None]
    (ref_label, ref, ref_mode), rest = present[0], present[1:]
    changes = []
    for label, v, mode in rest:
        arrow = f"{ref_label}→{label}"
        if v.verdict != ref.verdict:
            changes.append(f"verdict {ref.verdict} → {v.verdict} ({arrow})")
        if driver_label(v) != driver_label(ref):
            changes.append(f"{driver_label(ref)} → {driver_label(v)} ({arrow})")
        if v.runtime.wait_function != ref.runtime.wait_function:
            changes.append(f"wait {short_wait(ref.runtime.wait_function)} → "
                           f"{short_wait(v.runtime.wait_function)} ({arrow})")
        before = _headline_p99(ref, ref_mode)
        for what, value in _headline_p99(v, mode).items():
            old = before.get(what)
            if old and abs(value / old - 1) >= NOTABLE_P99_CHANGE:
                changes.append(f"p99 {what} {fmt_ms(old)} → {fmt_ms(value)} ms "
                               f"({_delta(value, old)}, {arrow})")
    missing = [LABELS[i] for i, v in enumerate(found) if v is None]
    if missing:
        changes.append(f"not measured in {', '.join(missing)}")
    return changes


def _environment_table(results: Sequence[RunResult]) -> tuple[tuple[str, tuple[str, ...],
                                                                  bool], ...]:
    flat = [dict(_flat(r.environment)) for r in results]
    keys: list[str] = []
    for env in flat:
        keys += [k for k in env if k not in keys]
    rows = []
    for key in keys:
        values = tuple(env.get(key, "–") for env in flat)
        differ = len(set(values)) > 1 and key not in EPHEMERAL_ENVIRONMENT
        rows.append((key.removeprefix("packages."), values, differ))
    return tuple(rows)


def _comparison_banner(runs: Sequence[RunView], comparison: Comparison) -> Banner:
    changed = [row for row in comparison.rows if row.verdict_changed]
    latest = runs[-1].banner
    details = tuple(f"{run.label}: {run.banner.text}" for run in runs)
    if not changed:
        return Banner(latest.level, f"No verdict changed across {_and(LABELS[:len(runs)])}; "
                      f"in {runs[-1].label}: {_lower_first(latest.text)}", details)
    moves = "; ".join(
        f"{row.name} " + " → ".join(c.verdict if c else "–" for c in row.cells)
        for row in changed)
    worse = any(row.cells[-1] is not None and row.cells[-1].verdict != "healthy"
                and not _is_control(runs[-1].result, row.name) for row in changed)
    level = "bad" if worse or latest.level == "bad" else latest.level
    return Banner(level, f"Verdicts changed from {runs[0].label} to {runs[-1].label}: "
                  f"{moves}.", details)


def _is_control(result: RunResult, name: str) -> bool:
    v = _find(result, name)
    return bool(v and v.control)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _find(result: RunResult, name: str) -> VariantResult | None:
    return next((v for v in result.variants if v.name == name), None)


# -- formatting (also the templates' filters) ------------------------------------------------

def fmt_ms(value: float) -> str:
    """Milliseconds with the digits that matter: 0.057, 2.07, 21.6, 226."""
    if value == 0:
        return "0"
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def fmt_pct(share: float) -> str:
    """0.3% and 84%: small shares keep a decimal, since 0.3% and 3% mean different things."""
    percent = 100 * share
    return f"{percent:.1f}%" if 0 < percent < 10 else f"{percent:.0f}%"


def short_wait(wait_function: str) -> str:
    return wait_function.rsplit(".", 1)[-1]


def md_text(text: str) -> str:
    """Text for GitHub Markdown: characters that would start emphasis or an HTML tag are
    escaped, except inside `code spans`, which stay as they are."""
    parts = str(text).split("`")
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        part = parts[i].replace("\\", "\\\\").replace("*", "\\*").replace("<", "&lt;")
        parts[i] = _escape_underscores(part)
    return "`".join(parts)


def _escape_underscores(text: str) -> str:
    # Intraword underscores (wait_poll) never start emphasis on GitHub; leading ones can.
    out = []
    for i, ch in enumerate(text):
        before = text[i - 1] if i else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        word = before.isalnum() and after.isalnum()
        out.append("\\_" if ch == "_" and not word else ch)
    return "".join(out)


def md_cell(text: str) -> str:
    """Text for one cell of a Markdown table."""
    return md_text(text).replace("|", "\\|").replace("\n", " ")
