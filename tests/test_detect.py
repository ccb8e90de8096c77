import dataclasses

from probe import detect
from probe.model import Cpu, Serialization
from tests.test_model import make_result


def judged(**overrides):
    return detect.judge(make_result(**overrides))


def serial(ratio: float, concurrency: int = 16) -> Serialization:
    return Serialization(concurrency=concurrency, sleep_ms=50, wall_ms=50 * ratio, ratio=ratio,
                         rounds=3)


def test_overlapping_idle_waits_are_healthy():
    verdict = judged(serialization=serial(1.05))
    assert verdict.verdict == "healthy" and verdict.fix is None


def test_serialised_sleeps_are_hub_blocking_even_when_queries_look_fast():
    result = make_result(serialization=serial(16.3), wait_function="wait_c")
    result = dataclasses.replace(
        result, runtime=dataclasses.replace(result.runtime, wait_function="wait_c"))
    verdict = detect.judge(result)
    assert verdict.verdict == "hub-blocking"
    assert any("per-query latency rewards hub blocking" in e for e in verdict.evidence)
    assert "patch_all() before anything imports psycopg" in verdict.fix


def test_threshold_is_halfway_to_fully_serialised():
    assert detect.serialised_threshold(16) == 8.5
    assert judged(serialization=serial(8.4)).verdict == "healthy"
    assert judged(serialization=serial(8.5)).verdict == "hub-blocking"


def test_cpu_burned_while_waiting_is_busy_wait_not_blocking():
    verdict = judged(serialization=serial(1.02),
                     cpu=Cpu(ms_per_query=0.1, burn_ratio=0.97, voluntary_ctx_per_query=0,
                             involuntary_ctx_per_query=1))
    assert verdict.verdict == "busy-wait"
    assert "polls without blocking" in verdict.fix


def test_errors_or_too_few_samples_are_inconclusive():
    assert judged(errors=100).verdict == "inconclusive"
    few = make_result().latency_ms.__class__(1, 1, 1, 1, 1, 1, count=10)
    assert judged(latency_ms=few).verdict == "inconclusive"
    assert judged(serialization=serial(1.0, concurrency=1)).verdict == "inconclusive"


def _runtime(**kw):
    return dataclasses.replace(make_result().runtime, **kw)


def test_fix_fits_what_was_seen():
    assert "Unset PSYCOPG_WAIT_FUNC" in detect.hub_blocking_fix(
        _runtime(wait_function="wait_c", psycopg_wait_func_env="wait_c"))
    assert ">= 3.1.14" in detect.hub_blocking_fix(
        _runtime(wait_function="wait_c", driver_version="3.1.8"))
    assert "psycogreen" in detect.hub_blocking_fix(
        _runtime(driver="psycopg2", driver_version="2.9.9", wait_function="none"))


def test_culprit_frame_is_the_innermost_one():
    frames = ('  File "app.py", line 3, in handler', "    query()",
              '  File "db.py", line 9, in query', "    cur.execute(sql)")
    assert detect.culprit_frame(frames) == 'File "db.py", line 9, in query `cur.execute(sql)`'
    assert detect.culprit_frame(()) is None
