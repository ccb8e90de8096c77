import dataclasses

from probe import detect, thresholds
from probe.measurement import Connects, Cpu, DbLoad, HttpView, LagSummary, RouteStats, Stalls
from tests.factories import contention, held, latency, measurement, runtime, serial, slices


def http_view() -> HttpView:
    route = RouteStats(name="products", latency_ms=latency(60.0, count=5000), requests=5000,
                       failures=0, rps=650.0)
    return HttpView(scenario="mixed", users=50, duration_s=8.0, rps=650.0, error_rate=0.0,
                    routes=(route,), loadgen_processes=1, loadgen_core_share=0.4,
                    loadgen_saturated=False)


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
    # Starved (notifies() holding the lock): too few queries is the finding, not missing data.
    few = DbLoad(latency_ms=latency(40.0, count=14), queries=14, errors=0, qps=3)
    starved = judged(db=few, contention=contention(0.95))
    assert starved.verdict == "contention" and "psycopg_pool" in starved.fix
    assert starved.evidence[0].startswith("Starved: only 14 successful queries")
    assert judged(db=few, contention=contention(0.05)).verdict == "inconclusive"


def test_runs_that_hold_the_hub_asleep_under_load_are_hub_blocking():
    found = slices(blocked=40, blocked_ms=2000, longest=(held(52.0, "blocked"),))
    verdict = judged(slices=found)
    assert verdict.verdict == "hub-blocking"
    assert any("40 blocked off the CPU" in e for e in verdict.evidence)
    assert "app.py" in verdict.fix and "cooperative" in verdict.fix
    # one or two are a pause, not a pattern; and the machine preempting us never counts
    assert judged(slices=slices(blocked=2, blocked_ms=2000)).verdict == "healthy"
    noise = judged(slices=slices(preempted=40, preempted_ms=2000))
    assert noise.verdict == "healthy"
    assert any("waited for a CPU other processes (or the VM's host) had" in e
               for e in noise.evidence)


def test_runs_that_compute_without_yielding_are_computing_not_blocking():
    found = slices(computing=200, computing_ms=3000, busy=0.97,
                   longest=(held(15.4, "computing", 'File "app.py", line 5, in view '
                                                    '`json.dumps(rows)`'),))
    verdict = judged(slices=found)
    assert verdict.verdict == "computing"
    assert "json.dumps(rows)" in verdict.fix and "another process" in verdict.fix
    # a few GC pauses of a real app: 1% of the time is no finding
    assert judged(slices=slices(computing=6, computing_ms=80)).verdict == "healthy"


def test_a_saturated_worker_is_healthy_with_a_note_on_capacity():
    lag = LagSummary(p50=8.0, p99=45.0, p999=60.0, max=70.0, samples=8000)
    late = Stalls(threshold_ms=10, count=260, total_ms=3000, share=0.37, max_ms=70,
                  queued=260)
    verdict = detect.judge(measurement(slices=slices(busy=0.93, capacity_rps=704.0),
                                       lag_ms=lag, stalls=late, http=http_view()))
    assert verdict.verdict == "healthy" and verdict.fix is None
    (note,) = verdict.notes
    assert "Saturated, not blocked" in note and "704 RPS" in note and "--rate" in note
    assert any("260 queued behind short slices" in e for e in verdict.evidence)
    # busy because its runs held the hub asleep: blocked, not saturated by short slices
    blocking = detect.judge(measurement(
        slices=slices(busy=1.0, blocked=133, blocked_ms=7900, capacity_rps=176.0),
        lag_ms=lag, stalls=late, http=http_view()))
    assert blocking.verdict == "hub-blocking"
    assert not any("Saturated" in n for n in blocking.notes), blocking.notes


def test_connecting_per_request_is_a_note_with_its_cpu_cost():
    found = slices(busy=0.9, connects=Connects(calls=4800, call_ms=40000, held_ms=2400,
                                               cpu_ms=2300, longest_ms=11.5))
    verdict = judged(slices=found)
    assert verdict.verdict == "healthy"
    assert any("A connection per request" in n and "ConnectionPool" in n
               for n in verdict.notes)


def test_a_measurement_that_did_not_complete_is_not_told_to_run_more_queries():
    broken = judged(problems=("gunicorn exited during start-up: Error: Not a string",))
    assert broken.verdict == "inconclusive"
    assert "did not complete" in broken.fix and "--queries" not in broken.fix


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


def test_blocked_runs_in_one_burst_are_a_stall_of_the_machine_not_blocking():
    import dataclasses

    from probe.measurement import HeldSlice

    def runs(*starts: float) -> tuple[HeldSlice, ...]:
        return tuple(dataclasses.replace(held(30.0, "blocked"), t=1000.0 + s) for s in starts)

    burst = slices(blocked=6, blocked_ms=180, watched_ms=1500, events=runs(0, .03, .06, .09))
    verdict = judged(slices=burst)
    assert verdict.verdict == "healthy"
    assert any("came in one burst" in e for e in verdict.evidence)
    again = dataclasses.replace(burst, events=runs(0, .03, .06, .9))  # held again later
    assert judged(slices=again).verdict == "hub-blocking"
    # Held back to back for seconds (an app that blocks at every request) is no stall.
    stream = dataclasses.replace(burst, blocked=80, blocked_ms=2400, watched_ms=3000,
                                 events=runs(*(i * 0.035 for i in range(80))))
    verdict = judged(slices=stream)
    assert verdict.verdict == "hub-blocking"
    assert not any("came in one burst" in e for e in verdict.evidence)
    assert judged(slices=dataclasses.replace(
        stream, events=stream.events[:28])).verdict == "healthy"  # the first 0.95 s only
