"""Faults, each provoked for real: the run ends in time, keeps what it measured, says what
broke, and leaves nothing running, whatever happens to it."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from probe import cli, lifecycle
from tests.conftest import ROOT, left_behind, temp_clusters

pytestmark = pytest.mark.slow


def start(*args: str, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "probe", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        if text in line:
            return
        assert time.monotonic() < deadline, f"no {text!r} in time"
    raise AssertionError(f"{text!r} never appeared")


def tree(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def gone_within(procs: list[psutil.Process], seconds: float = 10) -> list[str]:
    """The processes still alive after `seconds` (zombies count as gone)."""
    _, alive = psutil.wait_procs(procs, timeout=seconds)
    return [f"{p.pid} {' '.join(p.cmdline())}" for p in alive
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def find(procs: list[psutil.Process], marker: str) -> list[psutil.Process]:
    found = []
    for p in procs:
        try:
            if marker in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_postgresql_stopped_mid_run_ends_the_run_and_keeps_what_was_measured(tmp_path):
    out = tmp_path / "r.json"
    began = time.monotonic()
    proc = start("bench", "--variants", "psycopg-binary,psycopg-c,psycopg-python",
                 "--json", str(out))
    wait_for(proc, "[2/3] psycopg-c: running")
    (postmaster,) = [p for p in find(tree(proc.pid), "gevent-probe-pg-")
                     if p.name() == "postgres" and p.ppid() == proc.pid]
    postmaster.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "PostgreSQL stopped answering while psycopg-c was measured" in err
    assert time.monotonic() - began < 90
    data = json.loads(out.read_text())
    by_name = {r["name"]: r for r in data["variants"]}
    assert by_name["psycopg-binary"]["verdict"] == "healthy"  # kept
    assert by_name["psycopg-c"]["verdict"] == "inconclusive"
    assert by_name["psycopg-c"]["evidence"]  # the reason, in words
    assert "psycopg-python" not in by_name and data["aborted"] and not data["complete"]


def test_a_worker_killed_during_the_load_is_named_not_averaged_away(tmp_path):
    out = tmp_path / "r.json"
    proc = start("run", "--variants", "psycopg-binary", "--workers", "2", "--duration", "6",
                 "--users", "10", "--json", str(out))
    wait_for(proc, "load:")
    time.sleep(1.5)
    arbiter = next(p for p in find(tree(proc.pid), "gunicorn") if p.ppid() == proc.pid)
    victim = arbiter.children()[0]
    victim.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    result = json.loads(out.read_text())["variants"][0]
    assert result["verdict"] == "inconclusive"
    assert any(f"gunicorn worker {victim.pid} died" in e for e in result["evidence"])
    statuses = sorted(w["status"] for w in result["measured"]["workers"])
    assert statuses == ["died", "ok", "replacement"]


SLOW_TO_BOOT = '''
import os, time
if os.environ.get("GEVENT_PROBE_PORT"):  # only under gunicorn, not the tool's import check
    {action}
def app(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]
'''


def own_app(tmp_path: Path, action: str) -> Path:
    (tmp_path / "slowapp.py").write_text(textwrap.dedent(SLOW_TO_BOOT.format(action=action)))
    return tmp_path


def test_gunicorn_failing_at_start_up_is_inconclusive_and_leaves_nothing(tmp_path):
    before = temp_clusters()
    project = own_app(tmp_path, 'raise RuntimeError("the app cannot boot")')
    out = tmp_path / "r.json"
    proc = start("run", "--app", "slowapp:app", "--chdir", str(project), "--variants",
                 "psycopg-binary", "--duration", "2", "--json", str(out))
    wait_for(proc, "starting gunicorn")
    descendants = tree(proc.pid)
    proc.communicate(timeout=120)
    result = json.loads(out.read_text())["variants"][0]
    assert result["verdict"] == "inconclusive"
    assert "gunicorn exited during start-up" in result["evidence"][0]
    assert not gone_within(descendants + tree_of_gunicorns())
    assert not left_behind(before)


def tree_of_gunicorns() -> list[psutil.Process]:
    return [p for p in psutil.process_iter() if "gunicorn" in " ".join(_cmdline(p))]


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def while_gunicorn_starts(tmp_path: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """A run whose app takes 20 s to boot under gunicorn, caught while gunicorn starts."""
    project = own_app(tmp_path, "time.sleep(20)")
    proc = start("run", "--app", "slowapp:app", "--chdir", str(project), "--variants",
                 "psycopg-binary", "--output-dir", str(tmp_path / "reports"))
    wait_for(proc, "starting gunicorn")
    time.sleep(1.0)
    descendants = tree(proc.pid)
    assert find(descendants, "gunicorn")
    return proc, descendants


def test_ctrl_c_while_gunicorn_starts_leaves_nothing(tmp_path):
    before = temp_clusters()
    proc, descendants = while_gunicorn_starts(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not gone_within(descendants)
    assert not left_behind(before)


@pytest.mark.parametrize("args, phase, expect", [
    (("bench",), "[2/", "probe.worker"),
    (("run", "--variants", "psycopg-binary", "--duration", "30", "--locust-processes", "2"),
     "load:", "locust"),
])
def test_kill_9_of_the_tool_takes_everything_it_started_along(tmp_path, args, phase, expect):
    before = temp_clusters()
    proc = start(*args, "--output-dir", str(tmp_path))
    wait_for(proc, phase)
    deadline = time.monotonic() + 15  # locust forks its workers once it has imported
    while len(find(tree(proc.pid), expect)) < (3 if expect == "locust" else 1):
        assert time.monotonic() < deadline, f"no {expect} process in time"
        time.sleep(0.2)
    descendants = tree(proc.pid)
    assert find(descendants, expect) and find(descendants, "gevent-probe-pg-")
    if expect == "locust":
        assert len(find(descendants, "locust")) >= 3  # the master and its two workers
        assert find(descendants, "gunicorn")
    proc.kill()
    proc.wait()
    assert not gone_within(descendants, 10)
    assert left_behind(before)  # its folders stay behind a SIGKILL...
    lifecycle.sweep_stale()
    assert not left_behind(before)  # ...until the next run sweeps them


def test_kill_9_while_gunicorn_starts(tmp_path):
    proc, descendants = while_gunicorn_starts(tmp_path)
    proc.kill()
    proc.wait()
    assert not gone_within(descendants, 10)


def test_an_unexpected_error_costs_one_variant_not_the_run(tmp_path, monkeypatch, capsys):
    from probe import aggregate

    real = aggregate.from_bench

    def broken(report):
        if report.variant == "psycopg-c":
            raise KeyError("a bug in the summary")
        return real(report)

    monkeypatch.setattr(aggregate, "from_bench", broken)
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # cli.main's SIGTERM handler
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--variants", "psycopg-binary,psycopg-c,psycopg2", "--queries", "100",
                  "--json", str(out)])
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    by_name = {r["name"]: r for r in json.loads(out.read_text())["variants"]}
    assert by_name["psycopg-c"]["verdict"] == "inconclusive"
    assert "unexpected KeyError" in by_name["psycopg-c"]["evidence"][0]
    assert by_name["psycopg-binary"]["verdict"] == "healthy"
    assert by_name["psycopg2"]["verdict"] == "hub-blocking"


def test_ctrl_c_after_a_variant_keeps_results_and_reports_and_says_where(tmp_path):
    out = tmp_path / "results.json"
    proc = start("bench", "--variants", "psycopg-binary,psycopg2-green,wait_c", "--json",
                 str(out))
    wait_for(proc, "[2/3] psycopg2-green: running")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert "interrupted after 1 variant(s) (psycopg-binary)" in line
    assert str(out) in line and "complete: false" in line and "report.md" in line
    data = json.loads(out.read_text())
    assert not data["complete"] and [v["name"] for v in data["variants"]] == ["psycopg-binary"]
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.html").is_file()
