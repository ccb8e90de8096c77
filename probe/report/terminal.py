"""Terminal formatters: results in, text out. Only the CLI prints."""

from __future__ import annotations

import io
from typing import Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from probe.measurement import Measurement, Runtime
from probe.model import MatrixResult, RunResult, Unavailable, VariantResult
from probe.report.text import short_wait
from probe.variants import Variant

STYLE = {"healthy": "green", "hub-blocking": "bold red", "busy-wait": "bold magenta",
         "computing": "bold magenta", "contention": "bold yellow", "regressed": "bold red",
         "deadlock": "bold red", "errors": "bold red",
         "inconclusive": "yellow"}


UNBOUNDED = 400  # redirected output: no terminal to fit, so nothing is cut


def _render(*renderables: object, color: bool, width: int | None) -> str:
    buffer = io.StringIO()
    width = width or UNBOUNDED
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width,
                      highlight=False, soft_wrap=False)
    for item in renderables:
        console.print(item)
    return buffer.getvalue()


def verdict_cell(r: VariantResult) -> str:
    return f"[{STYLE.get(r.verdict, '')}]{r.verdict}[/]"


def results_table(run: RunResult, color: bool = False, width: int | None = None) -> str:
    """A row per variant, verdict first; the columns of `run` when it was a run."""
    is_run = run.mode == "run"
    command = run.command.split()[1] if len(run.command.split()) > 1 else run.mode
    table = Table(title=f"gevent-probe {command} — {run.environment.get('database', '')}",
                  title_justify="left")
    columns: list[tuple[str, Literal["left", "right"]]] = [
        ("variant", "left"), ("verdict", "left"), ("wait", "left")]
    columns += ([("RPS", "right"), ("route", "left"), ("avg ms", "right"), ("p99 ms", "right"),
                 ("other p99", "right")] if is_run else
                [("driver", "left"), ("avg ms", "right"), ("p99 ms", "right"), ("qps", "right")])
    columns += [("sleeps", "right"), ("blocked", "right"), ("cpu burn", "right"),
                ("held", "right"), ("busy", "right"), ("lock wait", "right")]
    if is_run:
        columns += [("requests/worker", "right"), ("locust cpu", "right")]
    for header, justify in columns:
        table.add_column(header, justify=justify, no_wrap=True)
    for r in run.variants:
        table.add_row(*_row(r, is_run))
    note = ("latencies in ms over HTTP (our HdrHistogram); sleeps: the in-worker probe; "
            "requests/worker: what each gunicorn worker served\n" if is_run else
            "latencies: SELECT 1 timed in-greenlet; sleeps: probe wall / sleep; blocked: "
            "median ms a query held the hub off-CPU\n")
    note += ("held: share of the load in slices past the threshold (blocked or computing); "
             "busy: share the greenlets ran\n")
    return _render(table, color=color, width=width) + note + details(run)


def _row(r: VariantResult, is_run: bool) -> list[str]:
    m = r.measured
    lock = f"{100 * m.contention.wait_share:.0f}%" if m.contention else "-"
    cells = [r.name, verdict_cell(r), short_wait(m.runtime.wait_function)]
    if is_run and m.http is not None and m.http.routes:
        # the route most requests went to, and the worst p99 of the others
        main = max(m.http.routes, key=lambda x: x.requests)
        others = [x.latency_ms.p99 for x in m.http.routes if x is not main]
        cells += [f"{m.http.rps:,.0f}", escape(main.name), f"{main.latency_ms.avg:.1f}",
                  f"{main.latency_ms.p99:.1f}", f"{max(others):.1f}" if others else "-"]
    elif is_run:
        cells += ["-", "-", "-", "-", "-"]
    else:
        cells += [f"{m.runtime.driver} {m.runtime.driver_version}",
                  f"{m.db.latency_ms.avg:.3f}", f"{m.db.latency_ms.p99:.3f}", f"{m.db.qps:,.0f}"]
    cells += [f"{m.serialization.ratio:.1f}x", f"{m.blocked_ms.p50:.2f}",
              f"{100 * m.cpu.burn_ratio:.0f}%", *_slice_cells(m), lock]
    if is_run:
        cells += ["/".join(str(w.requests) if w.status == "ok" else w.status
                           for w in m.workers) or "-",
                  f"{100 * m.http.loadgen_core_share:.0f}%" if m.http else "-"]
    return cells


def _slice_cells(m: Measurement) -> list[str]:
    s = m.slices
    if s is None:
        return ["-", "-"]
    return [f"{100 * (s.blocked_share + s.computing_share):.0f}%", f"{100 * s.busy_share:.0f}%"]


def checks_table(run: RunResult, notes: tuple[str, ...] = (), color: bool = False,
                 width: int | None = None) -> str:
    """The gate's checks, a row each, failures first."""
    table = Table(title="gevent-probe gate — checks", title_justify="left")
    for header in ("variant", "check", "result", "detail"):
        table.add_column(header, no_wrap=header != "detail")
    for c in sorted(run.checks, key=lambda c: c.passed):
        table.add_row(c.variant, c.check, "[green]pass[/]" if c.passed else "[bold red]FAIL[/]",
                      escape(c.detail))
    text = _render(table, color=color, width=width)
    return text + "".join(f"{note}\n" for note in notes)


def details(run: RunResult) -> str:
    lines: list[str] = []
    if run.app is not None:
        lines.append(f"\nyour app: {run.app.described()}")
    for r in run.variants:
        if r.verdict == "healthy":
            lines.extend(f"\n{r.name}: note: {note}" for note in r.notes)
            continue
        note = ""
        if r.control:
            note = " (control, as expected)" if r.verdict == r.expected else \
                f" (control: expected {r.expected})"
        lines.append(f"\n{r.name}: {r.verdict}{note}")
        lines.extend(f"  - {sentence}" for sentence in r.evidence)
        lines.extend(f"  note: {note}" for note in r.notes)
        if r.fix:
            lines.append(f"  fix: {r.fix}")
    lines.extend(_skipped_lines(run.skipped))
    lines.append(controls_line(run))
    if run.aborted:
        lines.append(f"\nABORTED: {run.aborted}")
    return "\n".join(lines) + "\n"


def _skipped_lines(skipped: tuple[Unavailable, ...]) -> list[str]:
    return [f"\nskipped {u.name}: {u.reason}\n  install: {u.hint}" for u in skipped]


def controls_line(run: RunResult) -> str:
    checked = [r for r in run.variants if r.control]
    if not checked:
        return "\ncontrols: none run"
    if run.control_problems:
        return ("\nWARNING controls not flagged as expected: " + "; ".join(run.control_problems)
                + " — the detectors cannot be trusted on this machine.")
    if len(checked) == 1:
        return f"\ncontrols: {checked[0].name} flagged as expected"
    return f"\ncontrols: all {len(checked)} flagged as expected"


def variants_table(rows: list[tuple[Variant, Runtime | Unavailable]], mode: str,
                   color: bool = False, width: int | None = None) -> str:
    """`gevent-probe variants`: what each variant is and what it really loads here."""
    other = "run" if mode == "bench" else "bench"
    table = Table(title=f"gevent-probe variants of {mode} (--mode {other} for {other}'s)",
                  title_justify="left")
    for header in ("variant", "expected", "available", "runs", "description"):
        table.add_column(header, no_wrap=header != "description")
    notes = []
    for variant, found in rows:
        expected = variant.expected if variant.control else "-"
        if isinstance(found, Unavailable):
            table.add_row(variant.name, expected, "[red]no[/]", "-", escape(variant.description))
            notes.append(f"{variant.name}: {found.reason}\n  install: {found.hint}")
        else:
            runs = f"{found.driver} {found.driver_version} {found.impl}, {found.wait_function}"
            table.add_row(variant.name, expected, "[green]yes[/]", escape(runs),
                          escape(variant.description))
    text = _render(table, color=color, width=width)
    return text + "".join(f"\n{note}\n" for note in notes)


def matrix_table(result: MatrixResult, color: bool = False, width: int | None = None) -> str:
    """Versions down, variants across: verdict, p99, serialisation and wait function."""
    names = list(dict.fromkeys(v.name for vr in result.versions for v in vr.variants))
    table = Table(title=f"gevent-probe matrix — {result.package}", title_justify="left")
    table.add_column(result.package, no_wrap=True)
    for name in names:
        table.add_column(name)
    for vr in result.versions:
        if vr.unavailable:
            reason = vr.unavailable if len(vr.unavailable) < 90 else vr.unavailable[:89] + "…"
            table.add_row(vr.version, *[f"[dim]{escape(reason)}[/]"] + [""] * (len(names) - 1))
            continue
        cells = {v.name: v for v in vr.variants}
        row = [vr.version]
        for name in names:
            v = cells.get(name)
            if v is None:
                row.append("-")
                continue
            m = v.measured
            wait = short_wait(m.runtime.wait_function)
            row.append(f"{verdict_cell(v)}\np99 {m.db.latency_ms.p99:.2f} ms, "
                       f"{m.serialization.ratio:.1f}x\n{wait}")
        table.add_row(*row)
    lines = [f"{t.variant}: {t.from_verdict} in {t.from_version} -> {t.to_verdict} in "
             f"{t.to_version}" for t in result.transitions]
    text = "transitions:\n" + "\n".join(f"  {line}" for line in lines) if lines else \
        "transitions: none (the same verdict in every tested version)"
    return _render(table, color=color, width=width) + text + "\n"
