from probe import aggregate, stats
from probe.messages import AgentReport, LoadReport, MonitorReport, ProbeReport, SleepRound
from tests.factories import measurement, runtime, serial


def hist(*values_us: int) -> str:
    h = stats.new_histogram()
    for v in values_us:
        h.record_value(v)
    return stats.encode(h)


def test_repeats_merge_exactly_and_keep_the_median_probe():
    runs = [measurement(serialization=serial(r), histograms={"db": hist(100, 200)})
            for r in (1.0, 16.0, 1.1)]
    merged = aggregate.merge(runs)
    assert merged.serialization.ratio == 1.1
    assert stats.decode(merged.histograms["db"]).get_total_count() == 6
    assert merged.db.latency_ms.count == 6 and merged.db.queries == 3 * 4800


def _probe(pid: int, wall_s: float) -> ProbeReport:
    return ProbeReport(pid=pid, runtime=runtime(), concurrency=16, sleep_s=0.05,
                       rounds=(SleepRound(wall_s=wall_s, cpu_s=0.001),),
                       blocked_hdr=hist(*[10] * 16))


def _agent(pid: int) -> AgentReport:
    monitor = MonitorReport(interval_ms=1, threshold_ms=10, watched_s=5, lag_hdr=hist(50),
                            stalls=0, stalled_ms=0, max_ms=0.05)
    load = LoadReport(db_hdr=hist(300, 400), queries=2, errors=0, wall_s=5, busy_s=0.1,
                      cpu_s=1.0, voluntary_ctx=10, involuntary_ctx=1)
    return AgentReport(pid=pid, requests={"select1": 500}, errors={}, monitor=monitor,
                       load=load)


def test_run_takes_the_worst_worker_and_names_the_one_that_died():
    m = aggregate.from_run(connections="per-greenlet",
                         probes=[_probe(10, 0.052), _probe(11, 0.8)],
                         agents=[_agent(10), _agent(12)], diag_pids=[10, 11],
                         load_data={"histograms": {"select1": hist(1000)},
                                    "requests": {"select1": 1000}, "failures": {}},
                         load_s=5.0, load_started=0.0, scenario="mixed", users=50,
                         loadgen_processes=1, loadgen_core_share=0.5, loadgen_saturated=False)
    assert m.serialization.ratio == 16.0  # worker 11's, not an average
    assert [(w.pid, w.status) for w in m.workers] == [(10, "ok"), (11, "died"),
                                                      (12, "replacement")]
    assert any("worker 11 died" in p for p in m.problems)
    assert m.db.queries == 4 and m.http.rps == 200.0


def test_repeats_of_a_run_keep_each_fields_meaning():
    from probe.measurement import HttpView, RouteStats, Stalls
    from tests.factories import latency

    def repeat(stalled_ms: float, blocked: float, p99_us: int) -> object:
        http = HttpView(scenario="mixed", users=10, duration_s=5, rps=100, error_rate=0,
                        routes=(RouteStats("select1", latency(1), 500, 5, 100),),
                        loadgen_processes=1, loadgen_core_share=0.5, loadgen_saturated=False)
        return measurement(http=http, blocked_ms=latency(blocked, count=16),
                           stalls=Stalls(threshold_ms=10, count=1, total_ms=stalled_ms,
                                         share=stalled_ms / 5000, max_ms=stalled_ms,
                                         watched_ms=5000),
                           histograms={"http:select1": hist(*[p99_us] * 100)})

    merged = aggregate.merge([repeat(0, 0.0, 1000), repeat(1000, 0.0, 1000),
                            repeat(500, 1.5, 9000)])
    assert merged.stalls.share == 0.1 and merged.stalls.watched_ms == 15000
    assert merged.blocked_ms.p50 == 1.5  # the worst repeat, as the worst worker
    (route,) = merged.http.routes
    assert (route.requests, route.failures, route.rps) == (1500, 15, 100.0)
    assert route.latency_ms.count == 300 and route.latency_ms.max >= 8.9
