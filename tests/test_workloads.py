"""The workloads beyond SELECT 1, each with the real drivers and server: deadlocks, COPY,
connects, a shared connection mixing statements; each with the variant that proves it."""

import json
import time

import pytest

from tests.conftest import left_behind, leftover_processes, probe_cli, temp_clusters

pytestmark = pytest.mark.slow


def measured(tmp_path, *args: str, timeout: float = 300) -> tuple[dict, float]:
    out = tmp_path / "r.json"
    start = time.monotonic()
    proc = probe_cli(*args, "--json", str(out), timeout=timeout)
    assert proc.returncode in (0, 2), proc.stderr
    found = {r["name"]: r for r in json.loads(out.read_text())["variants"]}
    return found, time.monotonic() - start


def test_a_row_lock_deadlocks_a_blocking_driver_and_the_run_goes_on(tmp_path):
    before = temp_clusters()
    found, took = measured(tmp_path, "bench", "--workload", "rowlock", "--variants",
                           "psycopg2,psycopg2-green,psycopg-binary", "--duration", "3")
    locked = found["psycopg2"]
    assert locked["verdict"] == "deadlock", locked["evidence"]
    text = " ".join(locked["evidence"])
    assert "froze: nothing completed" in text and "FOR UPDATE" in text
    assert "waited for a" in text and "held by backend" in text  # the server's side
    backends = locked["measured"]["deadlock"]["backends"]
    assert any(b["waiting_for"] and b["blocked_by"] for b in backends)
    assert "psycogreen" in locked["fix"]
    assert found["psycopg2-green"]["verdict"] == "healthy"
    assert found["psycopg-binary"]["verdict"] == "healthy"
    assert took < 90  # the deadlocked variant ended in about deadlock-after, not a timeout
    assert not leftover_processes("probe.worker") and not left_behind(before)


def test_psycopg_imported_before_patching_deadlocks_a_shared_connection_on_its_os_lock(
        tmp_path):
    found, _ = measured(tmp_path, "bench", "--connections", "shared", "--variants",
                        "psycopg-python-first,psycopg-python", "--queries", "50")
    first = found["psycopg-python-first"]
    assert first["verdict"] == "deadlock", first["evidence"]
    assert any("connection lock is the OS's" in e for e in first["evidence"])
    assert "before anything imports psycopg" in first["fix"]
    assert found["psycopg-python"]["verdict"] == "contention"  # shared, but gevent's lock


def test_each_workload_and_what_proves_it(tmp_path):
    copy, _ = measured(tmp_path, "bench", "--workload", "copy", "--variants",
                       "psycopg2-green,psycopg-binary", "--queries", "30")
    assert copy["psycopg2-green"]["verdict"] == "errors"
    assert "asynchronous callback" in " ".join(copy["psycopg2-green"]["evidence"])
    assert copy["psycopg-binary"]["verdict"] == "healthy"
    connect, _ = measured(tmp_path, "bench", "--workload", "connect", "--variants",
                          "psycopg2,psycopg-binary", "--queries", "10")
    assert connect["psycopg2"]["verdict"] == "hub-blocking"
    assert connect["psycopg-binary"]["verdict"] == "healthy"
    assert connect["psycopg-binary"]["measured"]["slices"]["connects"]["calls"] >= 100
    mixed, _ = measured(tmp_path, "bench", "--workload", "mixed", "--connections", "shared",
                        "--variants", "psycopg-binary", "--duration", "3")
    kinds = mixed["psycopg-binary"]["measured"]["db"]["units_by_kind"]
    assert set(kinds) == {"execute", "executemany", "copy", "pipeline"}
    assert mixed["psycopg-binary"]["verdict"] in ("contention", "errors")
    # notifies() holds the shared connection's lock while it waits: the queries starve.
    notify, _ = measured(tmp_path, "bench", "--workload", "notify", "--connections", "shared",
                         "--variants", "psycopg-binary", "--duration", "3")
    starved = notify["psycopg-binary"]
    assert starved["verdict"] == "contention", starved["evidence"]
    assert starved["evidence"][0].startswith("Starved: only ")


def test_a_row_lock_deadlock_under_gunicorn_ends_and_leaves_nothing(tmp_path):
    before = temp_clusters()
    found, took = measured(tmp_path, "run", "--workload", "rowlock", "--variants",
                           "psycopg2,psycopg-binary", "--duration", "4", "--users", "10")
    assert found["psycopg2"]["verdict"] == "deadlock", found["psycopg2"]["evidence"]
    assert found["psycopg2"]["measured"]["deadlock"]["backends"]
    assert found["psycopg-binary"]["verdict"] == "healthy"
    assert took < 120
    for marker in ("gunicorn", "locust", "probe.apps"):
        deadline = time.monotonic() + 10
        while leftover_processes(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not leftover_processes(marker), marker
    assert not left_behind(before)
