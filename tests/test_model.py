import json

import pytest

from probe.model import (
    SCHEMA,
    Cpu,
    HubBlocks,
    LagSummary,
    LatencySummary,
    RunResult,
    Runtime,
    Serialization,
    Unavailable,
    VariantResult,
    from_dict,
    to_dict,
)


def make_result(**overrides) -> VariantResult:
    fields = dict(
        name="psycopg-binary", driver="psycopg", impl="binary", wait_function="wait_poll",
        verdict="healthy",
        latency_ms=LatencySummary(avg=0.4, p50=0.3, p90=0.6, p99=1.2, p999=2.0, max=3.0,
                                  count=4800),
        throughput_qps=18000.0,
        serialization=Serialization(concurrency=16, sleep_ms=50, wall_ms=52, ratio=1.04,
                                    rounds=3),
        cpu=Cpu(ms_per_query=0.05, burn_ratio=0.07, voluntary_ctx_per_query=0.0,
                involuntary_ctx_per_query=0.1),
        loop_lag_ms=LagSummary(p50=0.05, p99=0.8, max=1.5, samples=300),
        hub_blocks=HubBlocks(count=0, max_ms=1.5, threshold_ms=10, first_frames=()),
        evidence=("a sentence",), fix=None,
        runtime=Runtime("psycopg", "3.3.8", "binary", "wait_poll", "18.0", ("select",),
                        "26.9.0", "3.5.6"),
        errors=0, latency_hdr="",
    )
    fields.update(overrides)
    return VariantResult(**fields)


def test_run_result_round_trips_through_json():
    run = RunResult(run_id="bench-1", mode="bench", started="2026-11-25T10:00:00+00:00",
                    duration_s=1.0, environment={"python": "3.11"}, config={"concurrency": 16},
                    variants=(make_result(),), skipped=(Unavailable("psycopg-c", "no", "pip"),))
    data = json.loads(json.dumps(to_dict(run)))
    assert data["schema"] == SCHEMA
    assert data["variants"][0]["latency_ms"]["p999"] == 2.0
    assert from_dict(RunResult, data) == run


def test_unknown_schema_is_refused():
    with pytest.raises(ValueError, match="schema"):
        from_dict(RunResult, {"schema": "gevent-probe/999"})
