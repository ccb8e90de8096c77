"""`gevent-probe run` end to end: real gunicorn gevent workers, real locust, real PostgreSQL."""

import json
import time
from pathlib import Path

import pytest

from tests.conftest import left_behind, leftover_processes, probe_cli, temp_clusters

pytestmark = pytest.mark.slow

LEFTOVERS = ("gunicorn", "locust", "probe.apps", "probe.worker")


def assert_nothing_left(before: set) -> None:
    deadline = time.monotonic() + 10
    while any(leftover_processes(m) for m in LEFTOVERS) and time.monotonic() < deadline:
        time.sleep(0.2)
    for marker in LEFTOVERS:
        assert not leftover_processes(marker), marker
    assert not left_behind(before)


def run(tmp_path, *args: str):
    out = tmp_path / "results.json"
    before = temp_clusters()
    proc = probe_cli("run", *args, "--json", str(out))
    data = json.loads(out.read_text()) if out.exists() else None
    return proc, data, before


def verdicts(data) -> dict:
    return {r["name"]: r["verdict"] for r in data["variants"]}


@pytest.fixture(scope="module")
def pool_of_one(tmp_path_factory):
    # One pooled connection per worker, two workers on two cores: 20 HTTP users queue on the
    # pools, but the probe measures inside each worker, on connections of its own.
    return run(tmp_path_factory.mktemp("pool1"), "--variants",
               "psycopg-binary,psycopg2-green,psycopg2,preload", "--pool-size", "1",
               "--workers", "2", "--duration", "4", "--users", "20")


def test_pool_size_and_worker_count_do_not_move_the_verdict(pool_of_one):
    proc, data, before = pool_of_one
    assert proc.returncode == 0, proc.stderr
    report_line = next(line for line in proc.stdout.splitlines() if line.startswith("report:"))
    html = report_line.split(None, 1)[1]
    assert "Load phase" in Path(html).read_text()  # the run report, with its timeline
    assert verdicts(data) == {"psycopg-binary": "healthy", "psycopg2-green": "healthy",
                              "psycopg2": "hub-blocking", "preload": "hub-blocking"}
    assert_nothing_left(before)


def test_every_worker_is_probed(pool_of_one):
    for r in pool_of_one[1]["variants"]:
        workers = r["measured"]["workers"]
        assert len(workers) == 2 and all(w["status"] == "ok" for w in workers), workers


def test_preload_really_ran_wait_c_in_the_worker(pool_of_one):
    by_name = {r["name"]: r["measured"] for r in pool_of_one[1]["variants"]}
    assert by_name["preload"]["runtime"]["wait_function"] == "wait_c"
    assert by_name["psycopg-binary"]["runtime"]["wait_function"] == "wait_poll"


def test_results_record_both_sides_of_the_load(pool_of_one):
    data = pool_of_one[1]
    assert data["mode"] == "run" and data["schema"] == "gevent-probe/3"
    for r in data["variants"]:
        m = r["measured"]
        assert m["http"]["scenario"] == "mixed"
        assert {route["name"] for route in m["http"]["routes"]} == {"select1", "sleep"}
        assert 0 < m["http"]["loadgen_core_share"] < 2
        assert m["workers"] and all(w["requests"] > 0 for w in m["workers"])
        assert m["db"]["latency_ms"]["count"] > 0 and m["serialization"]["concurrency"] == 16
        seconds = m["http"]["timeline"]
        assert len(seconds) >= 3 and sum(s["requests"] for s in seconds) > 0


def test_our_percentiles_agree_with_locusts_within_its_rounding(pool_of_one):
    for r in pool_of_one[1]["variants"]:
        for route in r["measured"]["http"]["routes"]:
            ours, theirs = route["latency_ms"]["p50"], route["locust_p50_ms"]
            # locust keeps whole ms under 100 ms and rounds to 10 ms above: allow that
            assert abs(ours - theirs) <= max(1.5, 0.1 * theirs), (route["name"], ours, theirs)


def test_bring_your_own_flask_app():
    # A load three times --deadlock-after: your app's answered requests are progress.
    proc = probe_cli("run", "--app", "flask_app:app", "--chdir", "examples", "--variants",
                     "psycopg-binary", "--duration", "3", "--deadlock-after", "1",
                     "--users", "10")
    assert proc.returncode == 0, proc.stderr
    assert "psycopg-binary: healthy" in proc.stderr and "deadlock" not in proc.stdout


def test_an_app_that_blocks_in_its_own_code_is_hub_blocking_with_its_line(tmp_path):
    # Its driver cooperates (the probe's own queries stay fast): only the runs held under
    # load show it, back to back for the whole load (no stall of the machine lasts so long).
    out = tmp_path / "r.json"
    proc = probe_cli("run", "--app", "blocking_call_app:app", "--chdir", "examples",
                     "--variants", "psycopg-binary", "--duration", "4", "--users", "20",
                     "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    (variant,) = json.loads(out.read_text())["variants"]
    assert variant["verdict"] == "hub-blocking", variant["evidence"]
    assert variant["measured"]["blocked_ms"]["p50"] < 0.2  # not from the probe's queries
    assert "blocking_call_app.py" in variant["fix"] and "audit" in variant["fix"]


@pytest.mark.parametrize("app, says", [
    ("no_such_module:app", "cannot import module 'no_such_module'"),
    ("flask_app:nope", "module 'flask_app' has no attribute 'nope'"),
])
def test_an_app_that_cannot_load_is_one_line_before_any_load(tmp_path, app, says):
    before = temp_clusters()
    start = time.monotonic()
    proc = probe_cli("run", "--app", app, "--chdir", "examples", "--variants",
                     "psycopg-binary", "--output-dir", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert says in line and "examples" in line and "Traceback" not in line
    assert time.monotonic() - start < 15
    assert not list(tmp_path.iterdir())  # nothing was measured, no empty run folder left
    assert_nothing_left(before)


def test_the_drivers_own_pools(tmp_path):
    proc, data, _ = run(tmp_path, "--variants", "psycopg-binary,psycopg2-green", "--pool",
                        "native", "--duration", "3", "--users", "10")
    assert proc.returncode == 0, proc.stderr
    assert verdicts(data) == {"psycopg-binary": "healthy", "psycopg2-green": "healthy"}
    assert all(w["status"] == "ok" for r in data["variants"] for w in r["measured"]["workers"])


PSYCOPG3_APP = '''
import os
import psycopg
from flask import Flask
from psycopg_pool import ConnectionPool

app = Flask(__name__)
pool = None


@app.get("/select1")
def select1():
    global pool
    if pool is None:  # DATABASE_URL: the convention, which the probe fills in
        pool = ConnectionPool(os.environ["DATABASE_URL"], min_size=2, max_size=10,
                              kwargs={"autocommit": True})
    with pool.connection() as conn:
        return str(conn.execute("SELECT 1").fetchone()[0])


@app.get("/sleep")
def sleep():
    with pool.connection() as conn:
        conn.execute("SELECT pg_sleep(0.05)")
    return "slept"
'''

FAILING_APP = '''
import os


def app(environ, start_response):
    dsn = os.environ["SHOP_DB"]  # a variable the probe does not set: every request fails
    start_response("200 OK", [])
    return [dsn.encode()]
'''


def test_your_app_is_judged_on_the_drivers_it_uses(tmp_path):
    (tmp_path / "shopapp.py").write_text(PSYCOPG3_APP)
    out = tmp_path / "r.json"
    proc = probe_cli("run", "--app", "shopapp:app", "--chdir", str(tmp_path), "--duration",
                     "3", "--warm-up", "1", "--users", "10", "--json", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    measured = {r["name"]: r["verdict"] for r in data["variants"]}
    assert "psycopg2" not in measured and "psycopg2-green" not in measured
    assert measured["psycopg-binary"] == "healthy"
    assert {"wait_c", "partial-block", "compute", "spin-wait"} <= set(measured)  # controls
    assert data["control_problems"] == []
    (driver,) = data["app"]["drivers"]
    assert driver["module"] == "psycopg" and driver["when"] == "with the app"
    report = (tmp_path / "report.md").read_text()
    banner = next(line for line in report.splitlines() if line.startswith("> "))
    assert "psycopg2" not in banner
    assert "Your app: shopapp:app uses psycopg" in report
    skipped = {s["name"]: s["reason"] for s in data["skipped"]}
    assert skipped and all("not used by your app" in r for r in skipped.values())


def test_an_app_whose_requests_all_fail_stops_at_once_and_says_why(tmp_path):
    (tmp_path / "failing.py").write_text(FAILING_APP)
    out = tmp_path / "r.json"
    before = temp_clusters()
    start = time.monotonic()
    proc = probe_cli("run", "--app", "failing:app", "--chdir", str(tmp_path), "--variants",
                     "psycopg-binary,psycopg2-green", "--duration", "3", "--users", "5",
                     "--json", str(out), timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "every request to the app failed under psycopg-binary" in proc.stderr
    assert "HTTP 500" in proc.stderr and "KeyError: 'SHOP_DB'" in proc.stderr
    assert "failing.py" in proc.stderr  # the app's own frame
    data = json.loads(out.read_text())
    assert [v["name"] for v in data["variants"]] == ["psycopg-binary"]  # stopped at once
    route = data["variants"][0]["measured"]["http"]["routes"][0]
    assert route["failed_with"] == {"500": route["failures"]} and route["first_failure"]
    assert time.monotonic() - start < 90
    assert_nothing_left(before)
