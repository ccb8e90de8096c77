"""Bad input: one line, exit 2, no traceback; secrets never shown; Ctrl-C leaves nothing."""

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, leftover_processes, probe_cli, temp_clusters


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_unknown_variant():
    assert "unknown variant 'nope'" in one_line_error(probe_cli("bench", "--variants", "nope"))


def test_bad_flag_value():
    assert "invalid int value" in one_line_error(probe_cli("bench", "--concurrency", "many"))


def test_zero_concurrency():
    assert "--concurrency must be" in one_line_error(probe_cli("bench", "--concurrency", "0"))


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
    # trust authentication ignores the password, so the run really happens with it in the DSN
    dsn = cluster.dsn + " password=Sup3rS3cret"
    out = tmp_path / "r.json"
    proc = probe_cli("bench", "--variants", "psycopg2", "--queries", "20", "--rounds", "1",
                     "--json", str(out), env={"GEVENT_PROBE_DSN": dsn})
    assert proc.returncode == 0, proc.stderr
    assert "Sup3rS3cret" not in proc.stdout + proc.stderr + out.read_text()
    assert json.loads(out.read_text())["config"]["dsn"].endswith("password=***")


@pytest.mark.slow
def test_ctrl_c_mid_run_stops_everything(tmp_path):
    before = temp_clusters()
    proc = subprocess.Popen([sys.executable, "-m", "probe", "bench", "--output-dir",
                             str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()  # the first progress line: the cluster is up
    assert "running" in line, line
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert temp_clusters() == before
    assert not leftover_processes("probe.worker")


@pytest.mark.slow
def test_variants_lists_every_variant_with_availability():
    proc = probe_cli("variants")
    assert proc.returncode == 0, proc.stderr
    for name in ("psycopg2", "psycopg-c", "spin-wait", "import-before-patch"):
        assert name in proc.stdout
    assert "wait_c" in proc.stdout
