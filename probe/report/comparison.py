"""Several results side by side (before/after a change, two machines, two driver versions):
variants matched by name, the first result the reference the others are measured against."""

from __future__ import annotations

from collections.abc import Sequence

from probe.model import RunResult, VariantResult
from probe.report.text import (
    and_list,
    driver_label,
    find_variant,
    flatten,
    fmt_ms,
    lower_first,
    short_wait,
)
from probe.report.view import Banner, Compared, ComparedRow, Comparison, RunView

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NOTABLE_P99_CHANGE = 0.2  # the gate's default --max-p99-ratio (1.2): below it, mostly noise
# Where the embedded server listened: differs on every run, says nothing about the machine.
EPHEMERAL_ENVIRONMENT = ("database", "postgresql.where")


def compare(results: Sequence[RunResult], names: Sequence[str]) -> Comparison:
    rows = []
    for name in names:
        found = [find_variant(r, name) for r in results]
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
    flat = [dict(flatten(r.environment)) for r in results]
    keys: list[str] = []
    for env in flat:
        keys += [k for k in env if k not in keys]
    rows = []
    for key in keys:
        values = tuple(env.get(key, "–") for env in flat)
        differ = len(set(values)) > 1 and key not in EPHEMERAL_ENVIRONMENT
        rows.append((key.removeprefix("packages."), values, differ))
    return tuple(rows)


def comparison_banner(runs: Sequence[RunView], comparison: Comparison) -> Banner:
    changed = [row for row in comparison.rows if row.verdict_changed]
    latest = runs[-1].banner
    details = tuple(f"{run.label}: {run.banner.text}" for run in runs)
    if not changed:
        return Banner(latest.level, f"No verdict changed across {and_list(LABELS[:len(runs)])}; "
                      f"in {runs[-1].label}: {lower_first(latest.text)}", details)
    moves = "; ".join(
        f"{row.name} " + " → ".join(c.verdict if c else "–" for c in row.cells)
        for row in changed)
    worse = any(row.cells[-1] is not None and row.cells[-1].verdict != "healthy"
                and not is_control(runs[-1].result, row.name) for row in changed)
    level = "bad" if worse or latest.level == "bad" else latest.level
    return Banner(level, f"Verdicts changed from {runs[0].label} to {runs[-1].label}: "
                  f"{moves}.", details)


def is_control(result: RunResult, name: str) -> bool:
    v = find_variant(result, name)
    return bool(v and v.control)
