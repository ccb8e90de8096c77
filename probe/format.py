"""Formatters: results in, text out. Only the CLI prints."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from probe.model import RunResult, Unavailable, VariantResult
from probe.variants import BY_NAME

STYLE = {"healthy": "green", "hub-blocking": "bold red", "busy-wait": "bold magenta",
         "inconclusive": "yellow"}


def _render(*renderables: object, color: bool, width: int) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width,
                      highlight=False, soft_wrap=False)
    for item in renderables:
        console.print(item)
    return buffer.getvalue()


def bench_table(run: RunResult, color: bool = False, width: int = 150) -> str:
    table = Table(title=f"gevent-probe bench — {run.environment.get('database', '')}",
                  title_justify="left")
    for header, justify in (("variant", "left"), ("verdict", "left"), ("driver", "left"),
                            ("wait", "left"), ("avg ms", "right"), ("p99 ms", "right"),
                            ("qps", "right"), ("sleeps", "right"), ("cpu burn", "right"),
                            ("lag max ms", "right"), ("stalls", "right")):
        table.add_column(header, justify=justify, no_wrap=True)
    for r in run.variants:
        table.add_row(
            r.name, f"[{STYLE.get(r.verdict, '')}]{r.verdict}[/]",
            f"{r.driver} {r.runtime.driver_version}", r.wait_function.rsplit(".", 1)[-1],
            f"{r.latency_ms.avg:.3f}", f"{r.latency_ms.p99:.3f}", f"{r.throughput_qps:,.0f}",
            f"{r.serialization.ratio:.1f}x", f"{100 * r.cpu.burn_ratio:.0f}%",
            f"{r.loop_lag_ms.max:.1f}", str(r.hub_blocks.count),
        )
    return _render(table, color=color, width=width) + details(run)


def details(run: RunResult) -> str:
    lines: list[str] = []
    for r in run.variants:
        if r.verdict == "healthy":
            continue
        lines.append(f"\n{r.name}: {r.verdict}{_control_note(r)}")
        lines.extend(f"  - {sentence}" for sentence in r.evidence)
        if r.fix:
            lines.append(f"  fix: {r.fix}")
    lines.extend(_skipped_lines(run.skipped))
    lines.append(controls_line(run.variants))
    return "\n".join(lines) + "\n"


def _control_note(result: VariantResult) -> str:
    variant = BY_NAME.get(result.name)
    return " (control, as expected)" if variant and variant.control and \
        variant.expected == result.verdict else ""


def _skipped_lines(skipped: tuple[Unavailable, ...]) -> list[str]:
    return [f"\nskipped {u.name}: {u.reason}\n  install: {u.hint}" for u in skipped]


def controls_line(results: tuple[VariantResult, ...]) -> str:
    """Controls prove the detectors work; a control with the wrong verdict voids the run."""
    wrong = [f"{r.name} gave {r.verdict}, expected {BY_NAME[r.name].expected}"
             for r in results if r.name in BY_NAME and BY_NAME[r.name].control
             and r.verdict != BY_NAME[r.name].expected]
    checked = [r for r in results if r.name in BY_NAME and BY_NAME[r.name].control]
    if not checked:
        return "\ncontrols: none run"
    if wrong:
        return "\nWARNING controls not flagged as expected: " + "; ".join(wrong) + \
            " — the detectors cannot be trusted on this machine."
    return f"\ncontrols: all {len(checked)} flagged as expected"


def variants_table(rows: list, color: bool = False, width: int = 140) -> str:
    """`gevent-probe variants`: what each variant is and what it really loads here."""
    table = Table(title="gevent-probe variants", title_justify="left")
    for header in ("variant", "expected", "available", "runs", "description"):
        table.add_column(header, no_wrap=header != "description")
    notes = []
    for variant, found in rows:
        expected = variant.expected if variant.control else "-"
        if isinstance(found, Unavailable):
            table.add_row(variant.name, expected, "[red]no[/]", "-", variant.description)
            notes.append(f"{variant.name}: {found.reason}\n  install: {found.hint}")
        else:
            runs = f"{found.driver} {found.driver_version} {found.impl}, {found.wait_function}"
            table.add_row(variant.name, expected, "[green]yes[/]", runs, variant.description)
    text = _render(table, color=color, width=width)
    return text + "".join(f"\n{note}\n" for note in notes)


def run_table(run: RunResult, color: bool = False, width: int = 170) -> str:
    """`gevent-probe run`: what users felt over HTTP beside what the workers saw inside."""
    table = Table(title=f"gevent-probe run — {run.environment.get('database', '')}",
                  title_justify="left")
    for header, justify in (("variant", "left"), ("verdict", "left"), ("wait", "left"),
                            ("RPS", "right"), ("select1 avg", "right"), ("p99", "right"),
                            ("slow p99", "right"), ("db avg", "right"), ("sleeps", "right"),
                            ("cpu burn", "right"), ("lag max", "right"), ("stalls", "right"),
                            ("workers", "right"), ("locust cpu", "right")):
        table.add_column(header, justify=justify, no_wrap=True)
    for r in run.variants:
        s = r.system
        if s is None:
            continue
        slow = next((route for route in s.routes if route.name != "select1"), None)
        table.add_row(
            r.name, f"[{STYLE.get(r.verdict, '')}]{r.verdict}[/]",
            r.wait_function.rsplit(".", 1)[-1], f"{s.rps:,.0f}",
            f"{r.latency_ms.avg:.1f}", f"{r.latency_ms.p99:.1f}",
            f"{slow.latency_ms.p99:.1f}" if slow else "-", f"{s.db_latency_ms.avg:.2f}",
            f"{r.serialization.ratio:.1f}x", f"{100 * r.cpu.burn_ratio:.0f}%",
            f"{r.loop_lag_ms.max:.0f}", str(r.hub_blocks.count),
            "/".join(str(w.requests) for w in s.workers) or "-",
            f"{100 * s.loadgen_core_share:.0f}%",
        )
    note = "latencies in ms, over HTTP, from our HdrHistogram; workers: requests each served\n"
    return _render(table, color=color, width=width) + note + details(run)
