"""Bad input: one line, exit 2, no traceback, fast; secrets never shown; Ctrl-C leaves nothing."""

import json
import signal
import subprocess
import sys
import time

import psycopg2
import pytest

from tests.conftest import ROOT, left_behind, leftover_processes, probe_cli, temp_clusters


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (("bench", "--variants", "nope"), "unknown variant 'nope'"),
    (("bench", "--concurrency", "many"), "invalid int value"),
    (("bench", "--concurrency", "0"), "--concurrency must be at least 2"),
    (("bench", "--duration", "1e12"), "--duration is capped at 3600"),
    (("bench", "--json", "/proc/x/r.json"), "cannot write /proc/x/r.json"),
    (("bench", "--output-dir", "/proc/x"), "cannot create /proc/x"),
    (("run", "--scenario", "nope"), "invalid choice"),
    (("run", "--duration", "0"), "--duration must be at least"),
    (("run", "--app", "no-colon"), "module:callable"),
    (("run", "--variants", "spin"), "unknown variant"),
    (("run", "--locustfile", "missing.py"), "--locustfile missing.py not found"),
    (("bench", "--variants", "preload"), "only exists in mode"),
    (("gate", "--max-p99", "abc"), "--max-p99 must be MS or ROUTE=MS"),
    (("gate", "--variants", "psycopg3"), "unknown variant 'psycopg3'"),
    (("gate", "--fail-on", "slow"), "--fail-on: unknown verdict(s) slow"),
    (("matrix", "--versions", "3.1.x"), "'3.1.x' is not a version"),
    (("report", "missing.json"), "cannot read missing.json"),
])
def test_bad_input_is_one_line_exit_2_and_fast(args, message):
    start = time.monotonic()
    line = one_line_error(probe_cli(*args))
    assert message in line and time.monotonic() - start < 15


@pytest.mark.parametrize("toml, message", [
    ('[bench]\nconcurrency = "many"\n', "concurrency in {} must be a whole number, got 'many'"),
    ("output_dir = 5\n", "output_dir in {} must be text, got 5"),
])
def test_a_config_file_with_wrong_types_is_one_line(tmp_path, toml, message):
    config = tmp_path / "p.toml"
    config.write_text(toml)
    assert message.format(config) in one_line_error(probe_cli("bench", "--config", str(config)))


@pytest.mark.slow
def test_unreachable_dsn_never_shows_its_password():
    proc = probe_cli("bench", "--dsn", "postgresql://app:Sup3rS3cret@127.0.0.1:1/db")
    line = one_line_error(proc)
    assert line.startswith("gevent-probe: error: cannot connect to 127.0.0.1:1/db")
    assert "Sup3rS3cret" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_missing_server_binaries(tmp_path):
    proc = probe_cli("bench", env={"GEVENT_PROBE_PG_BINDIR": str(tmp_path)})
    assert "holds no initdb and postgres" in one_line_error(proc)


@pytest.mark.slow
def test_password_in_a_working_dsn_reaches_no_output_or_file(cluster, tmp_path):
    with psycopg2.connect(cluster.dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE ROLE app LOGIN PASSWORD 'Sup3rS3cret'")
    dsn = f"host=127.0.0.1 port={cluster.port} dbname=postgres user=app password=Sup3rS3cret"
    out = tmp_path / "r.json"
    proc = probe_cli("bench", "--variants", "psycopg2,psycopg-binary", "--queries", "20",
                     "--json", str(out), env={"GEVENT_PROBE_DSN": dsn})
    assert proc.returncode == 0, proc.stderr
    assert "Sup3rS3cret" not in proc.stdout + proc.stderr + out.read_text()
    data = json.loads(out.read_text())
    assert data["settings"]["dsn"].endswith("password=***")
    assert data["environment"]["postgresql"]["source"] == "external"


@pytest.mark.slow
def test_ctrl_c_mid_run_stops_everything_and_keeps_what_was_measured(tmp_path):
    before = temp_clusters()
    out = tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-m", "probe", "bench", "--json", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stderr:
        if line.startswith("[3/"):  # two variants are measured and written
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not left_behind(before)
    assert not leftover_processes("probe.worker")
    data = json.loads(out.read_text())  # valid JSON, with what it had measured
    assert data["complete"] is False and len(data["variants"]) >= 2


@pytest.mark.slow
def test_variants_lists_every_variant_with_availability():
    proc = probe_cli("variants")
    assert proc.returncode == 0, proc.stderr
    for name in ("psycopg2", "psycopg-c", "spin-wait", "import-before-patch", "partial-block"):
        assert name in proc.stdout
    assert "wait_c" in proc.stdout
