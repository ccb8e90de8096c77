from probe.load import lost_workers, master_bind


def test_a_worker_whose_final_report_never_came_is_named_with_what_it_sent():
    data = {"mode": "master", "workers_missing": [],
            "load_workers": {"a": {"received": 90, "sent": 100, "final": True},
                             "b": {"received": 40, "sent": 40, "final": False}}}
    (problem,) = lost_workers(data, expected=2)
    assert "load worker b was lost" in problem and "40 requests sent" in problem


def test_workers_that_never_reported_or_stopped_beating_count_too():
    data = {"mode": "master", "workers_missing": ["c"],
            "load_workers": {"a": {"received": 9, "sent": 9, "final": True}}}
    problems = lost_workers(data, expected=3)
    assert any("load worker c was lost" in p for p in problems)
    assert problems[-1] == "only 1 of 3 load workers sent results"
    assert lost_workers({"mode": "local"}, expected=0) == []


def test_the_master_binds_where_told_on_locusts_port_by_default():
    assert master_bind("10.0.0.1:6000") == ("10.0.0.1", 6000)
    assert master_bind("10.0.0.1") == ("10.0.0.1", 5557)
    assert master_bind(None) == ("127.0.0.1", 5557)
