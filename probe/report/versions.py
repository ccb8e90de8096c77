"""The version matrix's view: a row per release, a cell per variant, the verdicts that moved."""

from __future__ import annotations

from typing import Any

from probe.model import MatrixResult
from probe.report.text import fmt_ms, short_wait
from probe.report.view import Banner, MatrixCell, MatrixRow


def matrix_context(m: MatrixResult) -> dict[str, Any]:
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
