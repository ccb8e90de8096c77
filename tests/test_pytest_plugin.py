"""The hub_block_guard fixture in a user's test suite, with real drivers and a real server."""

import pytest

pytestmark = pytest.mark.slow

CONFTEST = """
from gevent import monkey
monkey.patch_all()
"""

TESTS = '''
import os, time
import gevent, pytest
import psycopg
import psycopg2  # no psycogreen: libpq waits in C and never yields
from gevent.monkey import get_original

DSN = os.environ["GEVENT_PROBE_TEST_DSN"]


def queries(module, n=4):
    conns = [module.connect(DSN) for _ in range(n)]
    for c in conns:
        c.autocommit = True
    def one(conn):
        with conn.cursor() as cur:
            cur.execute("SELECT pg_sleep(0.05)")
    gevent.joinall([gevent.spawn(one, c) for c in conns], raise_error=True)


def connect_and_sleep(module, n=8):
    # each greenlet connects itself (SCRAM computes ~5 ms inside libpq), then sleeps 50 ms
    def one():
        conn = module.connect(DSN)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(0.05)")
        finally:
            conn.close()
    gevent.joinall([gevent.spawn(one) for _ in range(n)], raise_error=True)


def test_concurrent_cooperative_connects_pass(hub_block_guard):
    connect_and_sleep(psycopg)  # 8 handshakes queue for the hub: queueing, not a block


@pytest.mark.hub_block_guard(max_connect_ms=0.5)
def test_handshakes_fail_when_asked(hub_block_guard):
    connect_and_sleep(psycopg)  # SCRAM computes for milliseconds in each


def test_a_blocking_connect_fails(hub_block_guard):
    connect_and_sleep(psycopg2)


def test_computing_in_a_loop_fails_as_computing(hub_block_guard):
    end = time.perf_counter() + 0.03
    while time.perf_counter() < end:
        pass


def many_short_turns():
    def worker():
        for _ in range(5):
            end = time.perf_counter() + 0.001
            while time.perf_counter() < end:
                pass
            gevent.sleep(0)
    gevent.joinall([gevent.spawn(worker) for _ in range(40)])


def test_queueing_is_reported_not_failed(hub_block_guard):
    many_short_turns()


@pytest.mark.hub_block_guard(max_queue_ms=15)
def test_queueing_fails_when_asked(hub_block_guard):
    many_short_turns()


# 30 ms: a test runner's disk can stall any process for 10-15 ms; each blocking query holds
# the hub for 50 ms.
@pytest.mark.hub_block_guard(max_ms=30)
def test_cooperative_driver_passes(hub_block_guard):
    queries(psycopg)


@pytest.mark.hub_block_guard(max_ms=30)
def test_blocking_driver_fails(hub_block_guard):
    queries(psycopg2)


@pytest.mark.hub_block_guard(max_ms=500)
def test_a_marker_raises_the_limit(hub_block_guard):
    get_original("time", "sleep")(0.05)


def test_max_ms_set_in_the_test(hub_block_guard):
    hub_block_guard.max_ms = 500
    get_original("time", "sleep")(0.05)


def test_a_plain_blocking_sleep_fails(hub_block_guard):
    get_original("time", "sleep")(0.05)


@pytest.fixture
def blocking_setup(hub_block_guard):
    get_original("time", "sleep")(0.05)  # a fixture's setup is not the test body


def test_only_the_test_body_is_judged(blocking_setup):
    pass


def test_a_limit_the_watchdog_cannot_see_is_refused(hub_block_guard):
    with pytest.raises(ValueError, match="below 2 ms"):
        hub_block_guard.max_ms = 1
'''


def test_the_guard_fails_blocking_tests_and_names_the_frame(pytester, cluster, monkeypatch):
    monkeypatch.setenv("GEVENT_PROBE_TEST_DSN", cluster.dsn)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_guarded=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, failed=6)
    out = result.stdout.str()
    failed = {line.split("::")[1].split()[0] for line in out.splitlines()
              if line.startswith("FAILED test_guarded.py::")}
    assert failed == {"test_blocking_driver_fails", "test_a_plain_blocking_sleep_fails",
                      "test_a_blocking_connect_fails",
                      "test_computing_in_a_loop_fails_as_computing",
                      "test_queueing_fails_when_asked", "test_handshakes_fail_when_asked"}, out
    assert "a greenlet held the gevent hub for" in out and "allowed 30 ms" in out
    assert "allowed 10 ms" in out  # the default, for the plain sleep
    assert "blocked: asleep in a call" in out and "psycopg2" in out  # the driver's call...
    assert 'called from File "' in out and 'test_guarded.py", line ' in out  # ...and ours
    assert "get_original(\"time\", \"sleep\")(0.05)" in out
    assert "computing: " in out and "on the CPU without yielding" in out
    assert "conn = module.connect(DSN)" in out  # the blocking connect, named
    assert "greenlets waited up to" in out and "allowed 15 ms by max_queue_ms" in out
    assert "a connection's handshake held the gevent hub" in out
    assert "allowed 0.5 ms by max_connect_ms" in out
    assert "8 connect(s), handshakes holding the hub up to" in out
