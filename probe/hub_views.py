"""What the monitors of the measured processes saw of their hubs, as one view: the
heartbeat's late wakes (Stalls) and the greenlets' run slices (Slices), inside the load's
window or over the whole watch; and the same views of several repeats merged.

Counts and times are added, shares are over the summed window (every worker's), the
longest slices and the culprits are those of all; nothing is averaged away.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Sequence

from probe import stats
from probe.frames import MAX_LONGEST, merge_culprits
from probe.measurement import MAX_EVENTS, Connects, HeldSlice, Slices, Stalls
from probe.messages import MonitorReport, ProbeReport


def stalls(monitors: Sequence[MonitorReport],
            window: tuple[float, float] | None = None) -> Stalls:
    """The heartbeat's late wakes; with a window (run: the load phase, in Unix time), only
    those inside it, as a share of the window in every worker."""
    if window is None:
        watched_ms = sum(m.watched_s for m in monitors) * 1000
        events = sorted((e for m in monitors for e in m.events), key=lambda e: e.t)
        counts = {k: sum(m.kinds.get(k, 0) for m in monitors) for k in STALL_KINDS}
        stalled = sum(m.stalled_ms for m in monitors)
        preempted_ms = sum(m.preempted_ms for m in monitors)
        max_ms = max((m.max_ms for m in monitors), default=0.0)
    else:
        start, end = window
        watched_ms = (end - start) * 1000 * len(monitors)
        events = sorted((e for m in monitors for e in m.events if start <= e.t < end),
                        key=lambda e: e.t)
        counts = {k: sum(e.kind == k for e in events) for k in STALL_KINDS}
        # the per-second record is exact where the event list may be cut short
        stalled = sum(s.stalled_ms for m in monitors for s in m.seconds
                      if int(start) <= s.t < end)
        preempted_ms = sum(e.ms for e in events if e.kind == "preempted")
        max_ms = max((s.max_ms for m in monitors for s in m.seconds
                      if int(start) <= s.t < end), default=0.0)
    return Stalls(threshold_ms=monitors[0].threshold_ms if monitors else 0.0,
                  count=sum(n for k, n in counts.items() if k != "preempted"),
                  total_ms=round(stalled, 3),
                  share=round(stalled / watched_ms, 4) if watched_ms else 0.0,
                  max_ms=round(max_ms, 3), watched_ms=round(watched_ms, 3), **counts,
                  preempted_ms=round(preempted_ms, 3), events=tuple(events[:MAX_EVENTS]))


STALL_KINDS = ("blocked", "computing", "queued", "preempted")


def slices(monitors: Sequence[MonitorReport], probes: Sequence[ProbeReport],
            window: tuple[float, float] | None = None, rps: float | None = None) -> Slices:
    """The slices the measured processes saw; with a window (run), the busy and held time
    inside it from the per-second record, as shares of the window in every worker. The
    histogram of slice lengths covers each process's whole watch (the load and its edges)."""
    reports = [m.slices for m in monitors if m.slices is not None]
    threshold = reports[0].threshold_ms if reports else 0.0
    if window is None:
        watched_ms = sum(r.watched_s for r in reports) * 1000
        busy_ms = sum(r.busy_s for r in reports) * 1000
        events = sorted((e for r in reports for e in r.events), key=lambda e: e.t)

        def held(kind: str) -> tuple[int, float]:
            return (sum(r.held.get(kind, 0) for r in reports),
                    sum(r.held_ms.get(kind, 0.0) for r in reports))
    else:
        start, end = window
        watched_ms = (end - start) * 1000 * len(reports)
        seconds = [s for r in reports for s in r.seconds if int(start) <= s.t < end]
        busy_ms = sum(s.busy_ms for s in seconds)
        events = sorted((e for r in reports for e in r.events if start <= e.t < end),
                        key=lambda e: e.t)
        by_kind = {"blocked": sum(s.blocked_ms for s in seconds),
                   "computing": sum(s.computing_ms for s in seconds),
                   "preempted": sum(e.ms for e in events if e.kind == "preempted")}

        def held(kind: str) -> tuple[int, float]:
            return sum(e.kind == kind for e in events), by_kind[kind]
    (blocked, blocked_ms), (computing, computing_ms), (preempted, preempted_ms) = (
        held("blocked"), held("computing"), held("preempted"))
    busy_share = busy_ms / watched_ms if watched_ms else 0.0
    capacity = round(rps / busy_share, 0) if rps and busy_share >= MIN_BUSY_FOR_CAPACITY \
        else None
    return Slices(
        threshold_ms=threshold, count=sum(r.count for r in reports),
        watched_ms=round(watched_ms, 3), busy_ms=round(busy_ms, 3),
        busy_share=round(min(busy_share, 1.0), 4),
        length_ms=stats.latency_summary(stats.merge(r.slices_hdr for r in reports)),
        cpu_ms=round(sum(r.cpu_s for r in reports) * 1000, 3),
        blocked=blocked, blocked_ms=round(blocked_ms, 3),
        computing=computing, computing_ms=round(computing_ms, 3),
        preempted=preempted, preempted_ms=round(preempted_ms, 3),
        longest=_longest(r.longest for r in reports),
        culprits=merge_culprits([*reports, *probes]),
        connects=_connects([r.connects for r in reports]),
        events=tuple(events[:MAX_EVENTS]), capacity_rps=capacity)


MIN_BUSY_FOR_CAPACITY = 0.05  # below, an extrapolated capacity says more about noise


def merge_slices(slices: Sequence[Slices]) -> Slices | None:
    """Repeats (or anything measured apart) as one: counts and times added, shares over the
    summed window, the longest slices of all."""
    if not slices:
        return None
    if len(slices) == 1:
        return slices[0]
    watched = sum(s.watched_ms for s in slices)
    busy = sum(s.busy_ms for s in slices)
    capacities = [s.capacity_rps for s in slices if s.capacity_rps]
    return dataclasses.replace(
        slices[len(slices) // 2], count=sum(s.count for s in slices),
        watched_ms=round(watched, 3), busy_ms=round(busy, 3),
        busy_share=round(busy / watched, 4) if watched else 0.0,
        cpu_ms=round(sum(s.cpu_ms for s in slices), 3),
        blocked=sum(s.blocked for s in slices),
        blocked_ms=round(sum(s.blocked_ms for s in slices), 3),
        computing=sum(s.computing for s in slices),
        computing_ms=round(sum(s.computing_ms for s in slices), 3),
        preempted=sum(s.preempted for s in slices),
        preempted_ms=round(sum(s.preempted_ms for s in slices), 3),
        longest=_longest(s.longest for s in slices),
        culprits=merge_culprits(list(slices)),
        connects=_connects([s.connects for s in slices]),
        events=tuple(sorted((e for s in slices for e in s.events), key=lambda e: e.t)
                     [:MAX_EVENTS]),
        capacity_rps=round(statistics.median(capacities), 0) if capacities else None)


def _longest(groups: Iterable[Iterable[HeldSlice]]) -> tuple[HeldSlice, ...]:
    return tuple(sorted((h for g in groups for h in g), key=lambda h: -h.ms)[:MAX_LONGEST])


def _connects(found: Sequence[Connects | None]) -> Connects | None:
    present = [c for c in found if c is not None]
    if not present:
        return None
    return Connects(calls=sum(c.calls for c in present),
                    call_ms=round(sum(c.call_ms for c in present), 3),
                    held_ms=round(sum(c.held_ms for c in present), 3),
                    cpu_ms=round(sum(c.cpu_ms for c in present), 3),
                    longest_ms=max(c.longest_ms for c in present))


def merge_stalls(middle: Stalls, stalls: list[Stalls]) -> Stalls:
    watched = sum(s.watched_ms for s in stalls)
    total = sum(s.total_ms for s in stalls)
    return dataclasses.replace(
        middle, count=sum(s.count for s in stalls), total_ms=round(total, 3),
        share=round(total / watched, 4) if watched else 0.0, watched_ms=round(watched, 3),
        max_ms=max(s.max_ms for s in stalls), blocked=sum(s.blocked for s in stalls),
        computing=sum(s.computing for s in stalls), queued=sum(s.queued for s in stalls),
        preempted=sum(s.preempted for s in stalls),
        preempted_ms=round(sum(s.preempted_ms for s in stalls), 3))
