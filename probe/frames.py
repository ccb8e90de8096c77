"""Stack frames as evidence: stacks sampled from the hub's thread, the line that held the
hub, and culprits merged across reports."""

from __future__ import annotations

import linecache
import os
import sys
from collections import Counter
from typing import Any

from probe.measurement import Culprit

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
    """Culprits of several monitor reports, most sampled first, then unsampled ones."""
    counts: Counter[tuple[str, bool]] = Counter()
    stacks: dict[tuple[str, bool], tuple[str, ...]] = {}
    for report in reports:
        for c in report.culprits:
            counts[c.frame, c.sampled] += c.count
            stacks.setdefault((c.frame, c.sampled), c.stack)
    ranked = sorted(counts.items(), key=lambda kv: (not kv[0][1], -kv[1]))
    return tuple(Culprit(frame=f, count=n, stack=stacks[f, sampled], sampled=sampled)
                 for (f, sampled), n in ranked[:MAX_CULPRITS])


# -- stacks as the watchdog samples them: raw until a report formats them ----------------

RawFrame = tuple[str, int, str]  # file, line, function
RawStack = tuple[RawFrame, ...]  # innermost last
MAX_FRAMES = 20  # per stack, innermost kept
_HUB_FILE = os.path.join("gevent", "hub.py")


def sample_stack(thread_ident: int) -> RawStack | None:
    """The stack of another thread, innermost last (for the watchdog). Only attributes are
    read: no source lines, no file access, which in this thread would wait for the GIL at
    every system call while the hub computes."""
    frame = sys._current_frames().get(thread_ident)
    return walk(frame) if frame is not None else None


def walk(frame: Any) -> RawStack:
    found: list[RawFrame] = []
    while frame is not None and len(found) < MAX_FRAMES:
        # f_lineno is None while a frame runs code without a line (pytest's rewritten
        # asserts, for one): 0, which linecache reads as no source.
        found.append((frame.f_code.co_filename, frame.f_lineno or 0, frame.f_code.co_name))
        frame = frame.f_back
    return tuple(reversed(found))


def format_stack(stack: RawStack) -> tuple[str, ...]:
    """Text lines as the traceback module prints them (culprit_line reads those)."""
    lines = []
    for filename, lineno, name in stack:
        lines.append(f'  File "{filename}", line {lineno}, in {name}')
        source = linecache.getline(filename, lineno).strip()
        if source:
            lines.append(f"    {source}")
    return tuple(lines)


def innermost(stack: RawStack) -> RawFrame | str:
    """The frame a culprit is named by: the innermost one outside gevent."""
    for frame in reversed(stack):
        if "/gevent/" not in frame[0]:
            return frame
    return stack[-1] if stack else "?"


def frame_text(where: RawFrame | str) -> str:
    if isinstance(where, str):
        return where
    return culprit_line(format_stack((where,))) or "?"


def in_loop_poll(stack: RawStack, *wchans: str) -> bool:
    """The hub in its event loop's own poll, not in a callback: no Python frame above Hub.run,
    and the kernel saw the thread wait in epoll, or runnable ("0": woken, not yet given a CPU),
    in one of the `wchans` read around the sample (probe.sched; the thread may wake between a
    read and the sample). An idle hub asks to be woken when a socket is ready or the next
    timer (the heartbeat's, every few ms) is due; still there past the threshold, it was woken
    late: the thread did not get a CPU (a VM's stolen time reads as asleep in schedstat). So a
    hub run whose every sample is that is the machine's doing, not a held hub. Both tests are
    needed: a C function run directly as a callback (a builtin) shows only Hub.run too, but
    sleeps elsewhere than in epoll (hrtimer_nanosleep, a futex)."""
    if not stack or not any("epoll" in w or w == "0" for w in wchans):
        return False
    filename, _, function = stack[-1]
    return function == "run" and filename.endswith(_HUB_FILE)
