"""`gevent-probe bench`: the driver matrix without HTTP, one fresh worker process per variant.

Greenlets query PostgreSQL directly; seconds instead of minutes. The worker measures, this
module summarises (HDR percentiles, ratios) and asks `detect` for the verdict.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from probe import detect, metadata, stats
from probe import dsn as dsn_mod
from probe.config import BenchConfig
from probe.model import (
    Cpu,
    HubBlocks,
    RunResult,
    Serialization,
    Unavailable,
    VariantResult,
    WorkerReport,
    from_dict,
)
from probe.runner import WorkerFailed, run_worker
from probe.variants import Variant, select

# progress(index, total, variant name, state): state is "running", or the verdict / "skipped".
Progress = Callable[[int, int, str, str], None]


def run_bench(config: BenchConfig, dsn: str, database: str,
              progress: Progress | None = None) -> RunResult:
    chosen = select(config.variants, "bench")
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    results: list[VariantResult] = []
    skipped: list[Unavailable] = []
    for index, variant in enumerate(chosen):
        _tell(progress, index, len(chosen), variant.name, "running")
        outcome = measure_variant(variant, config, dsn)
        if isinstance(outcome, Unavailable):
            skipped.append(outcome)
            _tell(progress, index, len(chosen), variant.name, "skipped")
        else:
            results.append(outcome)
            _tell(progress, index, len(chosen), variant.name, outcome.verdict)
    return RunResult(
        run_id=f"bench-{started:%Y%m%d-%H%M%S}",
        mode="bench",
        started=started.isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - t0, 2),
        environment=metadata.collect(database),
        config=_public_config(config),
        variants=tuple(results),
        skipped=tuple(skipped),
    )


def _tell(progress: Progress | None, index: int, total: int, name: str, state: str) -> None:
    if progress is not None:
        progress(index, total, name, state)


def measure_variant(variant: Variant, config: BenchConfig, dsn: str) -> VariantResult | Unavailable:
    job = {
        "variant": variant.name,
        "dsn": dsn,
        "concurrency": config.concurrency,
        "queries": None if config.duration else config.queries,
        "duration": config.duration,
        "sleep_s": config.sleep_ms / 1000.0,
        "rounds": config.rounds,
        "block_threshold_s": config.block_threshold_ms / 1000.0,
    }
    try:
        reply = run_worker("probe.worker", job, variant.environment(), config.worker_timeout_s)
    except WorkerFailed as ex:
        return failed_result(variant, dsn_mod.scrub(str(ex), dsn))
    if "unavailable" in reply:
        return Unavailable(variant.name, dsn_mod.scrub(reply["unavailable"], dsn),
                           variant.install_hint)
    return summarize(from_dict(WorkerReport, reply["report"]), dsn)


def summarize(report: WorkerReport, dsn: str | None = None) -> VariantResult:
    """Turn a worker's raw report into a judged VariantResult."""
    latency_hist = stats.decode(report.latency_hdr)
    walls = [r.wall_s for r in report.sleep_rounds]
    wall = stats.median(walls)
    burn = stats.median(r.cpu_s / r.wall_s for r in report.sleep_rounds if r.wall_s > 0)
    queries = max(report.queries, 1)
    lag = stats.lag_summary(stats.decode(report.lag_hdr))
    rt = report.runtime
    result = VariantResult(
        name=report.variant,
        driver=rt.driver,
        impl=rt.impl,
        wait_function=rt.wait_function,
        verdict="inconclusive",
        latency_ms=stats.latency_summary(latency_hist),
        throughput_qps=round(report.queries / report.load_wall_s, 1) if report.load_wall_s else 0.0,
        serialization=Serialization(
            concurrency=report.concurrency,
            sleep_ms=report.sleep_s * 1000,
            wall_ms=round(wall * 1000, 2),
            ratio=round(wall / report.sleep_s, 2),
            rounds=len(walls),
        ),
        cpu=Cpu(
            ms_per_query=round(report.load_cpu_s * 1000 / queries, 4),
            burn_ratio=round(burn, 3),
            voluntary_ctx_per_query=round(report.voluntary_ctx / queries, 3),
            involuntary_ctx_per_query=round(report.involuntary_ctx / queries, 3),
        ),
        loop_lag_ms=lag,
        hub_blocks=HubBlocks(
            count=report.block_events,
            max_ms=lag.max,
            threshold_ms=report.block_threshold_ms,
            first_frames=tuple(dsn_mod.scrub(f, dsn) for f in report.block_first_frames),
        ),
        evidence=(),
        fix=None,
        runtime=rt,
        errors=report.errors,
        latency_hdr=report.latency_hdr,
    )
    judgement = detect.judge(result)
    evidence = judgement.evidence
    if report.first_error:
        evidence += (f"First error: {dsn_mod.scrub(report.first_error, dsn)}",)
    return dataclasses.replace(result, verdict=judgement.verdict, evidence=evidence,
                               fix=judgement.fix)


def failed_result(variant: Variant, reason: str) -> VariantResult:
    """A worker that crashed or hung: the variant is inconclusive, the run goes on."""
    from probe.model import LagSummary, LatencySummary, Runtime

    return VariantResult(
        name=variant.name, driver=variant.driver, impl=variant.impl or "", wait_function="?",
        verdict="inconclusive",
        latency_ms=LatencySummary(0, 0, 0, 0, 0, 0, 0), throughput_qps=0.0,
        serialization=Serialization(0, 0, 0, 0, 0), cpu=Cpu(0, 0, 0, 0),
        loop_lag_ms=LagSummary(0, 0, 0, 0), hub_blocks=HubBlocks(0, 0, 0),
        evidence=(f"The measured process failed: {reason}",),
        fix="Run `gevent-probe variants` to check the driver, then run again.",
        runtime=Runtime(variant.driver, "?", variant.impl or "", "?", "?", (), "?", "?"),
        errors=0, latency_hdr="",
    )


def _public_config(config: BenchConfig) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    data["dsn"] = dsn_mod.redact(config.dsn) if config.dsn else None
    return {k: str(v) if k.endswith(("_dir", "_path")) and v is not None else v
            for k, v in data.items()}
