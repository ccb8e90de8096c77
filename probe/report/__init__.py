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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from probe import detect, dsn, thresholds
from probe.errors import ProbeError
from probe.measurement import HeldSlice, StallEvent
from probe.model import MatrixResult, RunResult, VariantResult
from probe.report.comparison import LABELS, compare, comparison_banner
from probe.report.text import (
    and_list,
    driver_label,
    find_variant,
    flatten,
    fmt_ms,
    fmt_pct,
    md_cell,
    md_text,
    short_wait,
)
from probe.report.versions import matrix_context
from probe.report.view import Banner, Cell, Finding, Row, RunView, StallView
from probe.results import write_text

__all__ = ["banner", "md_cell", "render_html", "render_markdown", "write_reports"]

TEMPLATES = Path(__file__).parent / "templates"
MAX_EVENTS_SHOWN = 100  # per variant; the timeline draws them all
PROBLEM_NOUNS = {"hub-blocking": "hub blocking", "busy-wait": "busy-waiting",
                 "computing": "computing without yielding", "deadlock": "a deadlock",
                 "errors": "driver errors",
                 "contention": "connection contention", "regressed": "a latency regression",
                 "inconclusive": "no conclusion"}


# -- public API ------------------------------------------------------------------------------

def render_markdown(results: Sequence[RunResult | MatrixResult]) -> str:
    """report.md: banner, variant table, findings with fixes, how to reproduce."""
    if _matrix(results):
        return _template("matrix.md.j2", autoescape=False).render(matrix_context(_one(results)))
    return _template("report.md.j2", autoescape=False).render(_context(_runs(results)))


def render_html(results: Sequence[RunResult | MatrixResult]) -> str:
    """report.html: everything in one file that renders with no network."""
    if _matrix(results):
        return _template("matrix.html.j2", autoescape=True).render(matrix_context(_one(results)))
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


# -- which kind of report --------------------------------------------------------------------

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
    comparison = compare(results, names) if len(results) > 1 else None
    return {"runs": runs, "names": names, "comparison": comparison,
            "banner": comparison_banner(runs, comparison) if comparison else runs[0].banner,
            "generated_by": _generated_by(results[-1])}


def _figures(runs: Sequence[RunView], names: Sequence[str], plots: Any) -> dict[str, Any]:
    labelled = [plots.Labelled(run.label, run.result) for run in runs]
    colours = plots.variant_colours(names)
    timelines = []
    for name in names:
        per_run = [(run.label, find_variant(run.result, name)) for run in runs]
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
        environment=tuple(flatten(result.environment, skip=("packages",))),
        packages=tuple(sorted((k, str(v)) for k, v in
                              result.environment.get("packages", {}).items())),
        settings=tuple(flatten(result.settings)),
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
    return "; ".join(f"{PROBLEM_NOUNS.get(verdict, verdict)} in {and_list(names)}"
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


def _generated_by(result: RunResult) -> str:
    version = result.environment.get("packages", {}).get("gevent-probe", "")
    return f"gevent-probe {version}".strip()


