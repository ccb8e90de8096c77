"""The embedded cluster really starts, serves, and is gone afterwards."""

import os
import signal
import subprocess
import sys
import time

import psycopg2
import pytest

from probe import postgres
from probe.errors import ProbeError
from tests.conftest import leftover_processes, temp_clusters

pytestmark = pytest.mark.slow


def test_cluster_serves_on_loopback_and_leaves_nothing_behind():
    before = temp_clusters()
    cluster = postgres.EphemeralCluster().start()
    tmpdir = str(cluster.tmpdir)
    try:
        conn = psycopg2.connect(cluster.dsn)
        with conn.cursor() as cur:
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone()[0] == "127.0.0.1"
        conn.close()
        assert leftover_processes(tmpdir), "postgres should be running"
    finally:
        cluster.stop()
    assert not leftover_processes(tmpdir)
    assert temp_clusters() == before


def test_cluster_dies_with_its_parent_even_on_sigkill(tmp_path):
    script = ("from probe.postgres import EphemeralCluster; import time; "
              "c = EphemeralCluster().start(); print(c.tmpdir, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    tmpdir = proc.stdout.readline().strip()
    assert leftover_processes(tmpdir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while leftover_processes(tmpdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leftover_processes(tmpdir)
    subprocess.run(["rm", "-rf", tmpdir], check=False)  # nobody could clean up after SIGKILL


def test_forced_bindir_without_binaries_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(postgres.BINDIR_ENV, str(tmp_path))
    with pytest.raises(ProbeError, match="holds no initdb and postgres"):
        postgres.find_bindir()


def test_no_binaries_anywhere_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(postgres.BINDIR_ENV, raising=False)
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    with pytest.raises(ProbeError, match="no PostgreSQL server binaries found"):
        postgres.find_bindir()
