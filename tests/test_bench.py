"""`gevent-probe bench` end to end: real PostgreSQL, real worker processes, every verdict."""

import json

import pytest

from probe import variants
from tests.conftest import leftover_processes, probe_cli, temp_clusters

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    before = temp_clusters()
    proc = probe_cli("bench", "--json", str(out))
    return proc, out, before


def test_bench_completes_and_leaves_nothing_running(bench_run):
    proc, _out, before = bench_run
    assert proc.returncode == 0, proc.stderr
    assert temp_clusters() == before
    assert not leftover_processes("probe.worker")
    assert "controls: all 3 flagged as expected" in proc.stdout


@pytest.mark.parametrize("variant", [v for v in variants.for_mode("bench")])
def test_each_variant_gets_its_expected_verdict(bench_run, variant):
    data = json.loads(bench_run[1].read_text())
    result = next(r for r in data["variants"] if r["name"] == variant.name)
    assert result["verdict"] == variant.expected, result["evidence"]


def test_results_file_has_the_documented_fields(bench_run):
    data = json.loads(bench_run[1].read_text())
    assert data["schema"] == "gevent-probe/1" and data["mode"] == "bench"
    assert {"python", "packages", "kernel", "cpu_count", "database"} <= set(data["environment"])
    for r in data["variants"]:
        assert {"name", "driver", "impl", "wait_function", "verdict", "throughput_qps",
                "evidence"} <= set(r)
        assert set(r["latency_ms"]) == {"avg", "p50", "p90", "p99", "p999", "max", "count"}
        assert r["latency_ms"]["count"] == 16 * 300
        assert {"concurrency", "sleep_ms", "wall_ms", "ratio"} <= set(r["serialization"])
        assert {"ms_per_query", "burn_ratio"} <= set(r["cpu"])
        assert {"p50", "p99", "max"} <= set(r["loop_lag_ms"])
        assert {"count", "max_ms"} <= set(r["hub_blocks"])


def test_hub_blocking_evidence_names_the_blocking_frame(bench_run):
    data = json.loads(bench_run[1].read_text())
    blocked = next(r for r in data["variants"] if r["name"] == "import-before-patch")
    assert blocked["hub_blocks"]["count"] >= 1
    assert any("psycopg" in line for line in blocked["hub_blocks"]["first_frames"])
    assert "patch_all() before anything imports psycopg" in blocked["fix"]


def test_runtime_reports_what_really_ran(bench_run):
    data = json.loads(bench_run[1].read_text())
    by_name = {r["name"]: r for r in data["variants"]}
    assert by_name["psycopg-c"]["impl"] == "c"
    assert by_name["psycopg-python"]["impl"] == "python"
    assert by_name["psycopg-binary"]["wait_function"] == "wait_poll"
    assert by_name["wait_c"]["wait_function"] == "wait_c"
    assert "psycogreen" in by_name["psycopg2-green"]["wait_function"]
    assert "select" in by_name["psycopg-binary"]["runtime"]["patched_modules"]
