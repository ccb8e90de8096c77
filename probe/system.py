"""`gevent-probe run`: each variant behind real gunicorn gevent workers, under real locust load.

Per variant, in its own process tree: start gunicorn, ask every worker what it really runs,
probe serialisation and CPU burn over HTTP, then the load phase; stop everything, read each
worker's final stats, and judge with the same rules as `bench`. A pure SELECT 1 load hides
hub blocking; the default `mixed` scenario adds a trickle of slow queries, which exposes it.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from probe import detect, metadata, stats
from probe import dsn as dsn_mod
from probe.bench import Progress, failed_result
from probe.config import RunConfig
from probe.errors import ProbeError
from probe.load import LoadOutcome, LoadSettings, run_locust
from probe.model import (
    Cpu,
    HubBlocks,
    RouteStats,
    RunResult,
    Runtime,
    Serialization,
    SystemView,
    Unavailable,
    VariantResult,
    WorkerSummary,
    from_dict,
)
from probe.server import BYO_APP, BYO_PREFIX, DEFAULT_APP, Gunicorn, get, get_json
from probe.variants import Variant, select

LOAD_ROUTES = ("select1", "sleep", "app")  # "app": the user's own routes (apps/byo.py)


@dataclass(frozen=True)
class SystemConfig:
    variants: str | None = None
    load: LoadSettings = dataclasses.field(default_factory=LoadSettings)
    workers: int = 1
    worker_connections: int = 1000
    pool: str = "probe"  # "probe": one pool logic for every driver; "native": the driver's own
    pool_size: int = 10
    app: str | None = None  # module:callable of the user's app; None = apps/probe_app.py
    chdir: Path | None = None
    probe_concurrency: int = 16
    sleep_ms: float = 50.0
    rounds: int = 3
    block_threshold_ms: float = 10.0


def from_run_config(c: RunConfig) -> SystemConfig:
    load = LoadSettings(users=c.users, spawn_rate=c.spawn_rate, duration_s=c.duration,
                        scenario=c.scenario, locustfile=Path(c.locustfile) if c.locustfile
                        else None, processes=c.locust_processes,
                        master_bind=c.locust_master_bind, slow_share=c.slow_share,
                        slow_ms=c.slow_ms)
    return SystemConfig(variants=c.variants, load=load, workers=c.workers,
                        worker_connections=c.worker_connections, pool=c.pool,
                        pool_size=c.pool_size, app=c.app,
                        chdir=Path(c.chdir).resolve() if c.chdir else None,
                        probe_concurrency=c.probe_concurrency, sleep_ms=c.sleep_ms,
                        rounds=c.rounds, block_threshold_ms=c.block_threshold_ms)


def run_system(config: SystemConfig, dsn: str, database: str,
               progress: Progress | None = None) -> RunResult:
    chosen = select(config.variants, "run")
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    results: list[VariantResult] = []
    skipped: list[Unavailable] = []
    with tempfile.TemporaryDirectory(prefix="gevent-probe-run-") as tmp:
        for index, variant in enumerate(chosen):
            def tell(state: str, i: int = index, name: str = variant.name) -> None:
                if progress:
                    progress(i, len(chosen), name, state)

            outcome = measure_variant(variant, config, dsn, Path(tmp) / variant.name, tell)
            if isinstance(outcome, Unavailable):
                skipped.append(outcome)
                tell("skipped")
            else:
                results.append(outcome)
                tell(outcome.verdict)
    return RunResult(
        run_id=f"run-{started:%Y%m%d-%H%M%S}", mode="run",
        started=started.isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - t0, 2),
        environment=metadata.collect(database), config=_public_config(config),
        variants=tuple(results), skipped=tuple(skipped),
    )


def measure_variant(variant: Variant, config: SystemConfig, dsn: str, workdir: Path,
                    tell: Callable[[str], None]) -> VariantResult | Unavailable:
    from probe.availability import check

    found = check(variant)  # a driver that cannot import would only crash gunicorn
    if isinstance(found, Unavailable):
        return found
    server = Gunicorn(app=BYO_APP if config.app else DEFAULT_APP,
                      env=_app_env(variant, config, dsn), prefix=_prefix(config),
                      stats_dir=workdir, workers=config.workers,
                      worker_connections=config.worker_connections, preload=variant.preload,
                      chdir=config.chdir)
    tell("starting gunicorn")
    try:
        with server:
            runtimes = _diag_all(server)
            tell("probing serialisation")
            rounds = [_sleep_round(server, config) for _ in range(config.rounds)]
            _reset_all(server)
            tell(f"load: {config.load.users} users, {config.load.duration_s:g} s")
            outcome = run_locust(config.load, server.url, workdir)
    except ProbeError as ex:
        return failed_result(variant, dsn_mod.scrub(str(ex), dsn))
    return summarize(variant, config, runtimes, rounds, outcome, server.final_stats(), dsn)


def _prefix(config: SystemConfig) -> str:
    return BYO_PREFIX if config.app else ""


def _app_env(variant: Variant, config: SystemConfig, dsn: str) -> dict[str, str]:
    byo = {"GEVENT_PROBE_USER_APP": config.app} if config.app else {}
    return {**byo, **variant.environment(), "GEVENT_PROBE_VARIANT": variant.name,
            "GEVENT_PROBE_DSN": dsn, "GEVENT_PROBE_POOL": config.pool,
            "GEVENT_PROBE_POOL_SIZE": str(config.pool_size),
            "GEVENT_PROBE_BLOCK_THRESHOLD_MS": str(config.block_threshold_ms)}


def _each_worker(server: Gunicorn, path: str) -> dict[int, Any]:
    """GET path until every worker answered once (gunicorn picks the worker, not us)."""
    wanted = set(server.worker_pids())
    seen: dict[int, Any] = {}
    for _ in range(50 * max(1, len(wanted))):
        reply = get_json(server.url + server.prefix + path)
        seen.setdefault(reply["pid"], reply)
        if wanted and wanted <= set(seen):
            break
    return seen


def _diag_all(server: Gunicorn) -> dict[int, Runtime]:
    return {pid: from_dict(Runtime, reply["runtime"])
            for pid, reply in _each_worker(server, "/diag").items()}


def _reset_all(server: Gunicorn) -> None:
    for _ in range(20):
        get(server.url + server.prefix + "/select1")  # warm the pools before measuring
    _each_worker(server, "/stats?reset=1")


def _sleep_round(server: Gunicorn, config: SystemConfig) -> tuple[float, float]:
    """C requests to /sleep at once: wall time, and the workers' CPU seconds meanwhile."""
    import psutil

    workers = [psutil.Process(pid) for pid in server.worker_pids()]
    barrier = threading.Barrier(config.probe_concurrency + 1)
    url = f"{server.url}{server.prefix}/sleep?ms={config.sleep_ms:g}"

    def one() -> None:
        barrier.wait()
        get(url, timeout=60)

    threads = [threading.Thread(target=one) for _ in range(config.probe_concurrency)]
    for thread in threads:
        thread.start()
    cpu0 = _cpu(workers)
    t0 = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    return time.perf_counter() - t0, _cpu(workers) - cpu0


def _cpu(procs: list) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except Exception:  # a worker that died shows up in the results as missing
            continue
    return total


def summarize(variant: Variant, config: SystemConfig, runtimes: dict[int, Runtime],
              rounds: list[tuple[float, float]], outcome: LoadOutcome,
              worker_stats: list[dict[str, Any]], dsn: str | None) -> VariantResult:
    if not runtimes:
        raise ProbeError("no gunicorn worker answered /diag")
    runtime = next(iter(runtimes.values()))
    routes = _routes(outcome, config.load.duration_s)
    select1 = next((r for r in routes if r.name == "select1"), routes[0] if routes else None)
    requests = sum(r.requests for r in routes)
    failures = sum(r.failures for r in routes)
    db = stats.merge(w.get("db_latency_hdr", {}).get("select1", "") for w in worker_stats)
    lag = stats.lag_summary(stats.merge(w.get("lag_hdr", "") for w in worker_stats))
    worker_cpu = sum(w.get("cpu_s", 0.0) for w in worker_stats)
    served = sum(_served(w) for w in worker_stats)
    wall = stats.median(r[0] for r in rounds)
    per_worker_c = max(1, config.probe_concurrency // max(1, config.workers))
    frames = next((tuple(w["stall_first_frames"]) for w in worker_stats
                   if w.get("stall_first_frames")), ())
    system = SystemView(
        scenario=config.load.scenario if not config.load.locustfile else
        str(config.load.locustfile),
        users=config.load.users, duration_s=config.load.duration_s,
        rps=round(requests / config.load.duration_s, 1),
        error_rate=round(failures / requests, 4) if requests else 0.0,
        routes=tuple(routes), db_latency_ms=stats.latency_summary(db),
        workers=tuple(WorkerSummary(pid=w["pid"], requests=_served(w),
                                    cpu_s=round(w.get("cpu_s", 0.0), 3),
                                    wait_function=runtimes.get(w["pid"], runtime).wait_function)
                      for w in worker_stats),
        worker_cpu_share=round(worker_cpu / config.load.duration_s, 3),
        loadgen_processes=config.load.processes,
        loadgen_core_share=round(outcome.max_core_share, 3),
        loadgen_saturated=outcome.saturated,
    )
    result = VariantResult(
        name=variant.name, driver=runtime.driver, impl=runtime.impl,
        wait_function=runtime.wait_function, verdict="inconclusive",
        latency_ms=select1.latency_ms if select1 else stats.latency_summary(stats.new_histogram()),
        throughput_qps=system.rps,
        serialization=Serialization(concurrency=per_worker_c, sleep_ms=config.sleep_ms,
                                    wall_ms=round(wall * 1000, 2),
                                    ratio=round(wall * 1000 / config.sleep_ms, 2),
                                    rounds=len(rounds)),
        cpu=Cpu(ms_per_query=round(worker_cpu * 1000 / served, 4) if served else 0.0,
                burn_ratio=round(stats.median(c / w for w, c in rounds if w > 0), 3),
                voluntary_ctx_per_query=_per(worker_stats, "voluntary_ctx", served),
                involuntary_ctx_per_query=_per(worker_stats, "involuntary_ctx", served)),
        loop_lag_ms=lag,
        hub_blocks=HubBlocks(count=sum(w.get("stall_events", 0) for w in worker_stats),
                             max_ms=lag.max, threshold_ms=config.block_threshold_ms,
                             first_frames=tuple(dsn_mod.scrub(f, dsn) for f in frames)),
        evidence=(), fix=None, runtime=runtime, errors=failures,
        latency_hdr=outcome.data.get("histograms", {}).get("select1", ""),
        system=system,
    )
    judgement = detect.judge(result)
    return dataclasses.replace(result, verdict=judgement.verdict, evidence=judgement.evidence,
                               fix=judgement.fix)


def _served(worker: dict[str, Any]) -> int:
    """Requests of the load (not the probe's own diag/stats/healthz calls)."""
    return sum(n for route, n in worker.get("requests", {}).items() if route in LOAD_ROUTES)


def _per(worker_stats: list[dict[str, Any]], key: str, served: int) -> float:
    return round(sum(w.get(key, 0) for w in worker_stats) / served, 3) if served else 0.0


def _routes(outcome: LoadOutcome, duration_s: float) -> list[RouteStats]:
    data = outcome.data
    routes = []
    for name, encoded in sorted(data.get("histograms", {}).items()):
        locust = data.get("locust_stats", {}).get(name, {})
        requests = int(data.get("requests", {}).get(name, 0))
        routes.append(RouteStats(
            name=name, latency_ms=stats.latency_summary(stats.decode(encoded)),
            requests=requests, failures=int(data.get("failures", {}).get(name, 0)),
            rps=round(requests / duration_s, 1),
            locust_p50_ms=locust.get("p50"), locust_p99_ms=locust.get("p99")))
    return routes


def _public_config(config: SystemConfig) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()} | {
        "load": {k: (str(v) if isinstance(v, Path) else v)
                 for k, v in dataclasses.asdict(config.load).items()}}
