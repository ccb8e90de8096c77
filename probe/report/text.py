"""Words and numbers as every presentation prints them: terminal tables, Markdown, HTML, the
gate's summary. One place, so that a wait function or a latency reads the same everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from probe.model import RunResult, VariantResult


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


def driver_label(v: VariantResult) -> str:
    rt = v.runtime
    impl = f" {rt.impl}" if rt.driver == "psycopg" else ""  # psycopg 3 ships three builds
    return f"{rt.driver} {rt.driver_version}{impl}"


def flatten(data: dict[str, Any], prefix: str = "",
          skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    rows = []
    for key, value in data.items():
        if key in skip:
            continue
        if isinstance(value, dict):
            rows += flatten(value, f"{prefix}{key}.")
        elif value is not None:
            rows.append((f"{prefix}{key}", str(value)))
    return rows


def find_variant(result: RunResult, name: str) -> VariantResult | None:
    return next((v for v in result.variants if v.name == name), None)


def and_list(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
