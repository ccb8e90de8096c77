"""Raw reports of measured processes in, one Measurement out: the same fields for both modes.

`bench` brings one WorkerReport; `run` brings a ProbeReport and an AgentReport per gunicorn
worker plus locust's outcome. Where several workers report, nothing is averaged away: the
probe signals are those of the worst worker, counts and histograms are added exactly.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from probe import hub_views, stats, thresholds
from probe.measurement import (
    AppDriver,
    Connections,
    Contention,
    Cpu,
    DbLoad,
    Deadlock,
    HttpView,
    LatencySummary,
    Measurement,
    RouteStats,
    Runtime,
    Second,
    Serialization,
    Stalls,
    WorkerSummary,
)
from probe.messages import AgentReport, LoadReport, MonitorReport, ProbeReport, WorkerReport

if TYPE_CHECKING:
    from probe.variants import Variant

LOAD_ROUTES = ("select1", "sleep", "work", "app")  # "app": the user's own routes (byo)
START_LAG = "start_lag"  # histograms key: open model, µs each request left after it was due


def from_bench(report: WorkerReport) -> Measurement:
    load = report.load
    queries = max(load.queries, 1)
    return Measurement(
        runtime=report.probe.runtime,
        serialization=_serialization([report.probe]),
        cpu=Cpu(burn_ratio=_burn(report.probe),
                ms_per_query=round(load.cpu_s * 1000 / queries, 4),
                voluntary_ctx_per_query=round(load.voluntary_ctx / queries, 3),
                involuntary_ctx_per_query=round(load.involuntary_ctx / queries, 3)),
        blocked_ms=_blocked([report.probe]),
        lag_ms=stats.lag_summary(stats.decode(report.monitor.lag_hdr)),
        stalls=hub_views.stalls([report.monitor]),
        db=_db([load], load.wall_s),
        slices=hub_views.slices([report.monitor], [report.probe]),
        missing=report.monitor.missing,
        contention=_contention(report.connections, [load], http_busy_s=0.0),
        histograms=_histograms([report.probe], [report.monitor], [load]),
        wall_s=load.wall_s,
    )


def from_run(*, connections: Connections, probes: Sequence[ProbeReport],
             agents: Sequence[AgentReport],
             diag_pids: Iterable[int], load_data: dict[str, Any], load_s: float,
             load_started: float, scenario: str, users: int, loadgen_processes: int,
             loadgen_core_share: float, loadgen_saturated: bool,
             problems: Sequence[str] = (), target_rps: float | None = None) -> Measurement:
    load_started = float(load_data.get("started") or load_started)  # locust's test_start
    runtimes = {p.pid: p.runtime for p in probes}
    loads = [a.load for a in agents]
    monitors = [a.monitor for a in agents]
    served = sum(n for a in agents for route, n in a.requests.items() if route in LOAD_ROUTES)
    routes = _routes(load_data, load_s)
    http_busy_s = sum(r.latency_ms.avg * r.latency_ms.count for r in routes) / 1000
    workers, lost = _workers(agents, diag_pids, runtimes)
    cpu_s = sum(load.cpu_s for load in loads)
    requests = sum(r.requests for r in routes)
    failures = sum(r.failures for r in routes)
    http = HttpView(
        scenario=scenario, users=users, duration_s=load_s,
        rps=round(requests / load_s, 1) if load_s else 0.0,
        error_rate=round(failures / requests, 4) if requests else 0.0, routes=tuple(routes),
        loadgen_processes=loadgen_processes, loadgen_core_share=round(loadgen_core_share, 3),
        loadgen_saturated=loadgen_saturated,
        timeline=_timeline(load_data.get("timeline", []), monitors, load_started),
        started=load_started, target_rps=target_rps,
        app_error=next((a.app_error for a in agents if a.app_error), None),
        started_late_ms=stats.summarize_encoded(load_data.get("start_lag", ""))
        if target_rps else None)
    histograms = _histograms(probes, monitors, loads)
    histograms.update({f"http:{name}": encoded
                       for name, encoded in load_data.get("histograms", {}).items()})
    if target_rps and load_data.get("start_lag"):
        histograms[START_LAG] = load_data["start_lag"]
    return Measurement(
        runtime=_worst_probe(probes).runtime,
        serialization=_serialization(probes),
        cpu=Cpu(burn_ratio=max((_burn(p) for p in probes), default=0.0),
                ms_per_query=round(cpu_s * 1000 / served, 4) if served else 0.0,
                voluntary_ctx_per_query=_per(sum(x.voluntary_ctx for x in loads), served),
                involuntary_ctx_per_query=_per(sum(x.involuntary_ctx for x in loads), served)),
        blocked_ms=_blocked(probes),
        lag_ms=stats.lag_summary(stats.merge(m.lag_hdr for m in monitors)),
        stalls=hub_views.stalls(monitors, (load_started, load_started + load_s)),
        db=_db(loads, load_s),
        slices=hub_views.slices(monitors, probes, (load_started, load_started + load_s), http.rps),
        contention=_contention(connections, loads, http_busy_s),
        http=http,
        workers=tuple(workers),
        app_drivers=_app_drivers(agents),
        missing=tuple(dict.fromkeys(m for monitor in monitors for m in monitor.missing)),
        problems=tuple(problems) + tuple(lost),
        histograms=histograms,
        wall_s=load_s,
    )


def failed(variant: Variant, reason: str) -> Measurement:
    """A measurement of `variant` that could not happen: every number empty, what we know of
    what it would have run, and the reason."""
    empty = stats.latency_summary(stats.new_histogram())
    runtime = Runtime(driver=variant.driver, driver_version="?", impl=variant.impl or "",
                      wait_function="?", libpq_version="?", patched_modules=(),
                      gevent_version="?", greenlet_version="?")
    return Measurement(
        runtime=runtime,
        serialization=Serialization(0, 0.0, 0.0, 0.0, 0, 0.0),
        cpu=Cpu(0.0, 0.0, 0.0, 0.0),
        blocked_ms=empty,
        lag_ms=stats.lag_summary(stats.new_histogram()),
        stalls=Stalls(threshold_ms=0.0, count=0, total_ms=0.0, share=0.0, max_ms=0.0),
        db=DbLoad(latency_ms=empty, queries=0, errors=0, qps=0.0),
        problems=(reason,),
    )


def deadlocked(variant: Variant, found: Deadlock) -> Measurement:
    """A measurement of `variant` whose process froze: nothing else was measured."""
    return dataclasses.replace(failed(variant, ""), problems=(), deadlock=found)


def merge(measurements: Sequence[Measurement]) -> Measurement:
    """K repeats of a variant as one, each field with the meaning it has in one repeat:
    histograms and counts added exactly, shares over the summed time they are of, the probe's
    worst blocked time (as across workers), and the scalar probe signals (serialisation, CPU
    burn) of the median repeat by serialisation ratio."""
    if len(measurements) == 1:
        return measurements[0]
    ordered = sorted(measurements, key=lambda m: m.serialization.ratio)
    middle = ordered[len(ordered) // 2]
    keys = {k for m in measurements for k in m.histograms}
    histograms = {k: stats.encode(stats.merge(m.histograms.get(k, "") for m in measurements))
                  for k in sorted(keys)}
    db_hist = stats.decode(histograms.get("db", ""))
    queries = sum(m.db.queries for m in measurements)
    wall = sum(m.wall_s for m in measurements)
    return dataclasses.replace(
        middle,
        blocked_ms=max((m.blocked_ms for m in measurements), key=lambda b: b.p50),
        lag_ms=stats.lag_summary(stats.decode(histograms.get("lag", ""))),
        stalls=hub_views.merge_stalls(middle.stalls, [m.stalls for m in measurements]),
        slices=hub_views.merge_slices([m.slices for m in measurements if m.slices is not None]),
        db=DbLoad(latency_ms=stats.latency_summary(db_hist), queries=queries,
                  errors=sum(m.db.errors for m in measurements),
                  qps=round(queries / wall, 1) if wall else 0.0,
                  first_error=next((m.db.first_error for m in measurements
                                    if m.db.first_error), None),
                  workload=middle.db.workload,
                  errors_by_message=_added(m.db.errors_by_message for m in measurements),
                  units_by_kind=_added(m.db.units_by_kind for m in measurements)),
        http=_merged_http(middle.http, [m.http for m in measurements], histograms),
        problems=tuple(dict.fromkeys(p for m in measurements for p in m.problems)),
        histograms=histograms,
        wall_s=round(wall, 6),
    )


def _merged_http(middle: HttpView | None, views: list[HttpView | None],
                 histograms: dict[str, str]) -> HttpView | None:
    """Routes from the merged histograms and summed counts; the timeline of the median one."""
    if middle is None:
        return None
    present = [v for v in views if v is not None]
    duration = sum(v.duration_s for v in present)
    routes = []
    for route in middle.routes:
        same = [r for v in present for r in v.routes if r.name == route.name]
        requests = sum(r.requests for r in same)
        routes.append(dataclasses.replace(
            route, latency_ms=stats.summarize_encoded(histograms.get(f"http:{route.name}", "")),
            requests=requests, failures=sum(r.failures for r in same),
            rps=round(requests / duration, 1) if duration else 0.0))
    requests = sum(r.requests for r in routes)
    late = (stats.summarize_encoded(histograms[START_LAG]) if START_LAG in histograms
            else middle.started_late_ms)
    return dataclasses.replace(
        middle, routes=tuple(routes), rps=round(requests / duration, 1) if duration else 0.0,
        duration_s=duration, started_late_ms=late,
        error_rate=round(sum(r.failures for r in routes) / requests, 4) if requests else 0.0,
        loadgen_core_share=max(v.loadgen_core_share for v in present),
        loadgen_saturated=any(v.loadgen_saturated for v in present))


# -- the probe's signals --------------------------------------------------------------------

def _ratio(probe: ProbeReport) -> float:
    if not probe.rounds:
        return 0.0
    return statistics.median(r.wall_s for r in probe.rounds) / probe.sleep_s


def _worst_probe(probes: Sequence[ProbeReport]) -> ProbeReport:
    return max(probes, key=_ratio)


def _serialization(probes: Sequence[ProbeReport]) -> Serialization:
    worst = _worst_probe(probes)
    wall = statistics.median(r.wall_s for r in worst.rounds) if worst.rounds else 0.0
    return Serialization(concurrency=worst.concurrency, sleep_ms=worst.sleep_s * 1000,
                         wall_ms=round(wall * 1000, 2), ratio=round(_ratio(worst), 2),
                         rounds=len(worst.rounds),
                         threshold=thresholds.serialised_threshold(worst.concurrency))


def _burn(probe: ProbeReport) -> float:
    ratios = [stats.burn_ratio(r) for r in probe.rounds]
    return round(statistics.median(ratios), 3) if ratios else 0.0


def _blocked(probes: Sequence[ProbeReport]) -> LatencySummary:
    """The worst worker's per-query blocked time."""
    return max((stats.summarize_encoded(p.blocked_hdr) for p in probes),
               key=lambda s: s.p50, default=stats.latency_summary(stats.new_histogram()))


# -- the load -------------------------------------------------------------------------------

def _db(loads: Sequence[LoadReport], load_s: float) -> DbLoad:
    hist = stats.merge(load.db_hdr for load in loads)
    queries = sum(load.queries for load in loads)
    return DbLoad(latency_ms=stats.latency_summary(hist), queries=queries,
                  errors=sum(load.errors for load in loads),
                  qps=round(queries / load_s, 1) if load_s else 0.0,
                  first_error=next((x.first_error for x in loads if x.first_error), None),
                  workload=loads[0].workload if loads else "select1",
                  errors_by_message=_added(load.errors_by_message for load in loads),
                  units_by_kind=_added(load.units_by_kind for load in loads))


def _added(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(total)


def _contention(connections: Connections, loads: Sequence[LoadReport],
                http_busy_s: float) -> Contention | None:
    locks = [load.lock for load in loads if load.lock is not None]
    if not locks:
        return None  # not psycopg 3: no connection lock to time
    waits = stats.merge(lock.wait_hdr for lock in locks)
    wait_total_ms = sum(lock.wait_total_ms for lock in locks)
    # What the waits are a share of: the time in driver calls when the app times them (bench,
    # the sample app), else the users' time in requests (the user's own app).
    busy_ms = sum(load.busy_s for load in loads) * 1000 or http_busy_s * 1000
    return Contention(
        connections=connections,
        acquisitions=sum(lock.acquisitions for lock in locks),
        contended=sum(lock.contended for lock in locks),
        wait_ms=stats.latency_summary(waits), wait_total_ms=round(wait_total_ms, 3),
        wait_share=round(min(1.0, wait_total_ms / busy_ms), 4) if busy_ms else 0.0,
        first_frame=next((lock.first_frame for lock in locks if lock.first_frame), None),
        step_ms=stats.staircase_step(waits))


def _histograms(probes: Sequence[ProbeReport], monitors: Sequence[MonitorReport],
                loads: Sequence[LoadReport]) -> dict[str, str]:
    out = {
        "db": stats.encode(stats.merge(load.db_hdr for load in loads)),
        "blocked": stats.encode(stats.merge(p.blocked_hdr for p in probes)),
        "lag": stats.encode(stats.merge(m.lag_hdr for m in monitors)),
    }
    locks = [load.lock for load in loads if load.lock is not None]
    if locks:
        out["lock_wait"] = stats.encode(stats.merge(lock.wait_hdr for lock in locks))
    return out


# -- run only -------------------------------------------------------------------------------

def _routes(data: dict[str, Any], load_s: float) -> list[RouteStats]:
    routes = []
    for name, encoded in sorted(data.get("histograms", {}).items()):
        locust = data.get("locust_stats", {}).get(name, {})
        requests = int(data.get("requests", {}).get(name, 0))
        routes.append(RouteStats(
            name=name, latency_ms=stats.summarize_encoded(encoded), requests=requests,
            failures=int(data.get("failures", {}).get(name, 0)),
            rps=round(requests / load_s, 1) if load_s else 0.0,
            locust_p50_ms=locust.get("p50"), locust_p99_ms=locust.get("p99"),
            failed_with=dict(data.get("failed_with", {}).get(name, {})),
            first_failure=data.get("first_failure", {}).get(name)))
    return routes


def _workers(agents: Sequence[AgentReport], diag_pids: Iterable[int],
             runtimes: dict[int, Runtime]) -> tuple[list[WorkerSummary], list[str]]:
    """Every worker that answered before the load, and what became of it."""
    known = list(diag_pids)
    reported = {a.pid: a for a in agents}
    workers, lost = [], []
    for pid in known:
        agent = reported.get(pid)
        wait = runtimes[pid].wait_function if pid in runtimes else "?"
        if agent is None:
            workers.append(WorkerSummary(pid=pid, requests=0, cpu_s=0.0, wait_function=wait,
                                         status="died"))
            lost.append(f"gunicorn worker {pid} died during the load: it left no report, so "
                        "what it measured is missing.")
            continue
        workers.append(WorkerSummary(pid=pid, requests=_served(agent),
                                     cpu_s=round(agent.load.cpu_s, 3), wait_function=wait))
    for pid, agent in reported.items():
        if pid not in known:
            workers.append(WorkerSummary(pid=pid, requests=_served(agent),
                                         cpu_s=round(agent.load.cpu_s, 3), wait_function="?",
                                         status="replacement"))
    return workers, lost


def _app_drivers(agents: Sequence[AgentReport]) -> tuple[AppDriver, ...]:
    """What the app imported, in any worker: by module, at its import before lazily."""
    found: dict[str, AppDriver] = {}
    for agent in agents:
        for d in agent.app_drivers:
            if d.module not in found or found[d.module].when == "during requests":
                found[d.module] = d
    return tuple(found.values())


def _served(agent: AgentReport) -> int:
    return sum(n for route, n in agent.requests.items() if route in LOAD_ROUTES)


def _per(count: int, served: int) -> float:
    return round(count / served, 3) if served else 0.0


def _timeline(seconds: Sequence[dict[str, Any]], monitors: Sequence[MonitorReport],
              started: float) -> tuple[Second, ...]:
    lag: dict[int, list[float]] = {}
    for monitor in monitors:
        for second in monitor.seconds:
            entry = lag.setdefault(second.t, [0.0, 0.0])
            entry[0] = max(entry[0], second.max_ms)
            entry[1] += second.stalled_ms
    start = int(started)
    out = []
    for s in seconds:
        t = int(s["t"])
        max_ms, stalled_ms = lag.get(t, (0.0, 0.0))
        out.append(Second(t=t - start, requests=int(s["requests"]), failures=int(s["failures"]),
                          p99_ms=float(s["p99_ms"]), lag_max_ms=round(max_ms, 3),
                          stalled_ms=round(stalled_ms, 3)))
    return tuple(out)
