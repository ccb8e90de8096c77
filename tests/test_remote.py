"""Beyond one machine, on hosts of our own (tests/netns.py): `run --target` against an app
started separately with the agent and a token, and load from `gevent-probe load-worker`s in
other namespaces through locust's master/worker mode.

    switch ─┬─ 10.213.0.1  the tool (`run`, the locust master)
            ├─ 10.213.0.2  the app: gunicorn, 2 gevent workers, examples/deployed config
            ├─ 10.213.0.3  load worker
            └─ 10.213.0.4  load worker

PostgreSQL is the session's cluster, reached by the app through its unix socket (a path in
the shared filesystem: the namespaces separate networks only).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import netns
from tests.conftest import ROOT, leftover_processes

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(netns.available() is not None,
                                 reason=str(netns.available()))]

APP_PORT = netns.APP_PORT
MASTER_PORT = 5557
EXPECTED = {"psycopg2": "hub-blocking", "psycopg-binary": "healthy", "wait_c": "hub-blocking"}


@pytest.fixture(scope="module")
def network():
    net = netns.Network()
    hosts = [net.host() for _ in range(4)]
    time.sleep(1)  # IPv4 is up at once; give the bridge a moment to learn the ports
    yield hosts
    net.close()


@pytest.fixture
def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture(scope="module")
def socket_dsn(cluster, tmp_path_factory) -> str:
    return netns.socket_dsn(cluster, tmp_path_factory.mktemp("auth"))


@pytest.fixture
def start_app(network, socket_dsn, tmp_path):
    started: list[netns.App] = []

    def start(variant: str, token: str | None) -> netns.App:
        host, address = network[1]
        app = netns.App(host, address, socket_dsn, variant, token,
                        tmp_path / f"app-{variant}.log")
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


def run_from(network, tmp_path: Path, token: str, *args: str,
             workers: int = 0) -> tuple[subprocess.Popen[bytes], Path]:
    host, address = network[0]
    out = tmp_path / "results.json"
    argv = [sys.executable, "-m", "probe", "run", "--target", f"http://{network[1][1]}:{APP_PORT}",
            "--json", str(out), "--duration", "6", *args]
    if workers:
        argv += ["--expect-workers", str(workers), "--locust-master-bind",
                 f"{address}:{MASTER_PORT}", "--expect-workers-max-wait", "60"]
    env = {"GEVENT_PROBE_AGENT_TOKEN": token}
    return host.start(argv, tmp_path / "run.log", env=env, cwd=ROOT), out


def load_worker(network, n: int, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    host, _ = network[n]
    log = tmp_path / f"worker{n}.log"
    master = f"{network[0][1]}:{MASTER_PORT}"
    return host.start([sys.executable, "-m", "probe", "load-worker", "--master", master,
                       "--runs", "1"], log, cwd=ROOT), log


def finished(proc: subprocess.Popen[bytes], out: Path, log: Path) -> dict:
    assert proc.wait(timeout=300) in (0, 2), log.read_text()[-3000:]
    assert out.is_file(), log.read_text()[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_a_deployed_app_gets_the_verdict_of_a_local_run(network, start_app, tmp_path, token,
                                                        variant):
    start_app(variant, token)
    proc, out = run_from(network, tmp_path, token)
    data = finished(proc, out, tmp_path / "run.log")
    (result,) = data["variants"]
    assert result["name"] == variant  # as the app's agent said
    assert result["verdict"] == EXPECTED[variant], result["evidence"]
    measured = result["measured"]
    assert len(measured["workers"]) == 2  # both gunicorn workers, whoever got the load
    assert all(w["requests"] > 0 for w in measured["workers"])
    assert "password" not in out.read_text() and token not in out.read_text()


def test_without_the_token_the_agent_answers_nothing(start_app, token):
    app = start_app("psycopg-binary", token)
    for route in ("diag", "measure?token=x&concurrency=2&sleep_ms=1&rounds=1", "report",
                  "healthz", "reset"):
        assert app.get(f"/_probe/{route}")[0] == 404
        assert app.get(f"/_probe/{route}", token="not-" + token)[0] == 404
    status, body = app.get("/_probe/diag", token=token)
    assert status == 200
    diag = json.loads(body)
    assert diag["variant"] == "psycopg-binary" and len(diag["workers"]) == 2
    assert "passfile" not in body.decode() and "GEVENT_PROBE" not in body.decode()
    assert app.get("/select1")[0] == 200  # the app itself is untouched


def test_an_app_started_without_a_token_has_no_agent(start_app, token):
    app = start_app("psycopg-binary", None)
    assert app.get("/_probe/diag", token=token)[0] == 404
    assert app.get("/select1")[0] == 200


@pytest.mark.parametrize("variant, rate", [("psycopg-binary", None), ("wait_c", None),
                                           ("psycopg-binary", 300)])
def test_two_load_workers_on_other_hosts_merge_exactly(network, start_app, tmp_path, token,
                                                       variant, rate):
    start_app(variant, token)
    workers = [load_worker(network, n, tmp_path) for n in (2, 3)]
    extra = ("--rate", str(rate)) if rate else ()
    proc, out = run_from(network, tmp_path, token, *extra, workers=2)
    data = finished(proc, out, tmp_path / "run.log")
    sent = []
    for worker, log in workers:
        assert worker.wait(timeout=60) == 0, log.read_text()
        sent += [int(n) for n in re.findall(r"sent (\d+) requests", log.read_text())]
    (result,) = data["variants"]
    assert result["verdict"] == EXPECTED[variant], result["evidence"]
    http = result["measured"]["http"]
    assert http["loadgen_processes"] == 2
    assert len(sent) == 2 and min(sent) > 0
    assert sum(r["requests"] for r in http["routes"]) == sum(sent)
    if rate:  # the master's --rate reached both workers: each sent half of it
        assert http["target_rps"] == rate and abs(http["rps"] - rate) < 0.1 * rate
        assert max(sent) - min(sent) <= 0.05 * max(sent)


def test_a_load_worker_lost_mid_run_is_reported(network, start_app, tmp_path, token):
    start_app("psycopg-binary", token)
    workers = [load_worker(network, n, tmp_path) for n in (2, 3)]
    proc, out = run_from(network, tmp_path, token, "--duration", "12", workers=2)
    deadline = time.monotonic() + 120
    while "load: " not in (tmp_path / "run.log").read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(4)
    workers[0][0].kill()  # kill -9: its locust worker dies with it
    data = finished(proc, out, tmp_path / "run.log")
    (result,) = data["variants"]
    assert result["verdict"] == "inconclusive"
    assert any("was lost during the load" in line for line in result["evidence"])
    assert workers[1][0].wait(timeout=60) == 0
    time.sleep(1)
    assert leftover_processes("load-worker") == []
    assert [p for p in leftover_processes("locust") if "--worker" in p] == []
