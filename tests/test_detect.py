import dataclasses

from probe import detect, thresholds
from probe.model import Cpu, DbLoad, Stalls
from tests.factories import contention, latency, measurement, runtime, serial


def judged(**kw):
    return detect.judge(measurement(**kw))


def test_overlapping_idle_waits_are_healthy():
    verdict = judged()
    assert verdict.verdict == "healthy" and verdict.fix is None


def test_serialised_sleeps_are_hub_blocking_even_when_queries_look_fast():
    verdict = judged(serialization=serial(16.3), blocked_ms=latency(50.0, count=16),
                     runtime=runtime(wait_function="wait_c"))
    assert verdict.verdict == "hub-blocking"
    assert any("per-query latency rewards hub blocking" in e for e in verdict.evidence)
    assert "patch_all() before anything imports psycopg" in verdict.fix


def test_threshold_is_halfway_to_fully_serialised():
    assert thresholds.serialised_threshold(16) == 8.5
    custom = runtime(wait_function="custom_wait")  # no known behaviour to cross-check
    assert judged(serialization=serial(8.4), runtime=custom).verdict == "healthy"
    assert judged(serialization=serial(8.5), runtime=custom).verdict == "hub-blocking"


def test_a_short_block_in_every_query_is_hub_blocking_though_the_sleeps_overlap():
    verdict = judged(serialization=serial(1.6), blocked_ms=latency(1.05, count=16),
                     runtime=runtime(wait_function="partial_block_wait"))
    assert verdict.verdict == "hub-blocking"
    assert "blocks the hub for ~1.1 ms" in verdict.fix
    assert judged(blocked_ms=latency(0.15, count=16)).verdict == "healthy"


def test_cpu_burned_while_waiting_is_busy_wait_not_blocking():
    verdict = judged(cpu=Cpu(burn_ratio=0.97, ms_per_query=0.1, voluntary_ctx_per_query=0,
                             involuntary_ctx_per_query=1),
                     runtime=runtime(wait_function="spin_wait"))
    assert verdict.verdict == "busy-wait"
    assert "polls without blocking" in verdict.fix


def test_greenlets_starving_on_a_shared_connection_are_contention():
    verdict = judged(contention=contention(0.88))
    assert verdict.verdict == "contention"
    assert any("88% of the time in driver calls" in e for e in verdict.evidence)
    assert any("not fair" in e for e in verdict.evidence)
    assert "psycopg_pool" in verdict.fix
    assert judged(contention=contention(0.05)).verdict == "healthy"


def test_hub_stalls_under_load_count_but_not_the_machine_preempting_us():
    stalled = Stalls(threshold_ms=10, count=40, total_ms=2000, share=0.4, max_ms=60,
                     blocked=40)
    assert judged(stalls=stalled).verdict == "hub-blocking"
    noise = Stalls(threshold_ms=10, count=0, total_ms=0, share=0.0, max_ms=60,
                   preempted=40, preempted_ms=2000)
    verdict = judged(stalls=noise)
    assert verdict.verdict == "healthy"
    assert any("preempting" in e for e in verdict.evidence)
    one_pause = Stalls(threshold_ms=10, count=1, total_ms=80, share=0.2, max_ms=80, busy=1)
    assert judged(stalls=one_pause).verdict == "healthy"


def test_errors_or_too_few_samples_are_inconclusive():
    failing = DbLoad(latency_ms=latency(0.4, count=50), queries=50, errors=750, qps=10,
                     first_error="ProgrammingError: execute cannot be used while an "
                                 "asynchronous query is underway")
    verdict = judged(db=failing)
    assert verdict.verdict == "inconclusive"
    assert "asynchronous query is underway" in " ".join(verdict.evidence)
    assert "cannot share a connection" in detect.judge(
        measurement(db=failing, runtime=runtime(driver="psycopg2", psycogreen=True,
                                                wait_function="x"))).fix
    few = DbLoad(latency_ms=latency(0.4, count=10), queries=10, errors=0, qps=10)
    assert judged(db=few).verdict == "inconclusive"
    assert judged(problems=("gunicorn worker 12 died",)).verdict == "inconclusive"


def test_a_wait_function_that_disagrees_with_the_measurement_is_inconclusive():
    verdict = judged(runtime=runtime(wait_function="wait_c"))
    assert verdict.verdict == "inconclusive"
    assert "disagree" in verdict.evidence[0]
    verdict = judged(serialization=serial(16.0), blocked_ms=latency(50, count=16))
    assert verdict.verdict == "inconclusive"  # wait_poll with select patched cannot block


def test_evidence_gives_a_why_only_where_it_is_known():
    old = runtime(wait_function="wait_c", driver_version="3.1.13")
    sentence = detect.wait_sentence(old)
    assert "whatever the import order" in sentence and "not patched" not in sentence
    assert ">= 3.1.14" in detect.hub_blocking_fix(measurement(runtime=old), serialised=True)
    forced = runtime(wait_function="wait_c", psycopg_wait_func_env="wait_c")
    assert "PSYCOPG_WAIT_FUNC=wait_c is set" in detect.wait_sentence(forced)
    trap = runtime(wait_function="wait_c", patched_before_import=False)
    assert "had not yet patched select" in detect.wait_sentence(trap)
    assert detect.wait_sentence(runtime()).endswith("waits with wait_poll.")
    green = dataclasses.replace(runtime(), driver="psycopg2", driver_version="2.9.9",
                                wait_function="none (libpq blocks)")
    assert "psycogreen" in detect.hub_blocking_fix(measurement(runtime=green), True)
