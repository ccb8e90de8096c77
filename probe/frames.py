"""Stack frames as evidence: the line that held the hub, and culprits merged across reports."""

from __future__ import annotations

from collections import Counter
from typing import Any

from probe.model import Culprit

MAX_CULPRITS = 5
MAX_LONGEST = 5  # held slices kept with their stacks


def culprit_line(stack: tuple[str, ...] | list[str]) -> str | None:
    """The innermost 'File ..., line N, in f' of a sampled stack, with its source line,
    skipping the probe's own frames (the heartbeat, the measurement loop)."""
    fallback = None
    for i in range(len(stack) - 1, -1, -1):
        line = stack[i].strip()
        if not line.startswith("File "):
            continue
        source = stack[i + 1].strip() if i + 1 < len(stack) else ""
        text = f"{line} `{source}`" if source and not source.startswith("File ") else line
        if fallback is None:
            fallback = text
        if "/gevent/" not in line:
            return text
    return fallback


def caller_line(stack: tuple[str, ...] | list[str]) -> str | None:
    """The innermost frame of the user's own code: not a library, not the standard library."""
    for i in range(len(stack) - 1, -1, -1):
        line = stack[i].strip()
        if not line.startswith("File ") or any(part in line for part in _LIBRARY):
            continue
        source = stack[i + 1].strip() if i + 1 < len(stack) else ""
        return f"{line} `{source}`" if source and not source.startswith("File ") else line
    return None


_LIBRARY = ("/site-packages/", "/dist-packages/", "/lib/python3", "<frozen ")


def merge_culprits(reports: list[Any]) -> tuple[Culprit, ...]:
    """Culprits of several monitor reports, most sampled first."""
    counts: Counter[str] = Counter()
    stacks: dict[str, tuple[str, ...]] = {}
    for report in reports:
        for c in report.culprits:
            counts[c.frame] += c.count
            stacks.setdefault(c.frame, c.stack)
    return tuple(Culprit(frame=f, count=n, stack=stacks[f])
                 for f, n in counts.most_common(MAX_CULPRITS))
