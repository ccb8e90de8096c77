"""The two set-ups beyond one machine, measured on hosts of our own (needs root).

    .venv/bin/python benchmarks/remote.py [--duration 8]

Builds the network of tests/test_remote.py (Linux network namespaces on a virtual switch:
the tool at 10.213.0.1, a deployed app at .2, load workers at .3 and .4), starts the sample
app as a team would deploy it (gunicorn, 2 gevent workers, examples/deployed_gunicorn_conf.py,
a token), and for each driver runs `gevent-probe run --target` twice: with its load from the
tool's host, then from two `gevent-probe load-worker`s. Printed: verdict, RPS, /select1
p50/p99, and the requests the workers said they sent beside those the master merged.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe.postgres import EphemeralCluster  # noqa: E402
from tests import netns  # noqa: E402

VARIANTS = ("psycopg2", "psycopg-binary", "wait_c")


def run(net: list[tuple[netns.Namespace, str]], tmp: Path, token: str, duration: float,
        workers: int) -> dict[str, object]:
    tool, tool_address = net[0]
    out = tmp / "results.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "probe", "run", "--target",
            f"http://{net[1][1]}:{netns.APP_PORT}", "--json", str(out),
            "--duration", f"{duration:g}"]
    if workers:
        argv += ["--expect-workers", str(workers), "--locust-master-bind",
                 f"{tool_address}:5557"]
    logs = [tmp / f"worker{n}.log" for n in range(workers)]
    started = [net[2 + n][0].start([sys.executable, "-m", "probe", "load-worker", "--master",
                                    f"{tool_address}:5557", "--runs", "1"], logs[n], cwd=ROOT)
               for n in range(workers)]
    tool.start(argv, tmp / "run.log", env={"GEVENT_PROBE_AGENT_TOKEN": token},
               cwd=ROOT).wait(timeout=600)
    for proc in started:
        proc.wait(timeout=60)
    (result,) = json.loads(out.read_text())["variants"]
    http = result["measured"]["http"]
    select1 = next(r for r in http["routes"] if r["name"] == "select1")
    sent = sum(int(n) for log in logs for n in re.findall(r"sent (\d+) requests", log.read_text()))
    return {"verdict": result["verdict"], "rps": http["rps"],
            "p50": select1["latency_ms"]["p50"], "p99": select1["latency_ms"]["p99"],
            "merged": sum(r["requests"] for r in http["routes"]), "sent": sent}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    why = netns.available()
    if why:
        raise SystemExit(f"benchmarks/remote.py: {why}")
    t0 = time.perf_counter()
    token = secrets.token_hex(16)
    net = netns.Network()
    try:
        hosts = [net.host() for _ in range(4)]
        time.sleep(1)
        with EphemeralCluster() as pg, tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            dsn = netns.socket_dsn(pg, tmp)
            print("| driver | load from | verdict | RPS | /select1 p50 / p99 ms "
                  "| requests sent / merged |")
            print("|---|---|---|---|---|---|")
            for variant in VARIANTS:
                app = netns.App(hosts[1][0], hosts[1][1], dsn, variant, token,
                                tmp / f"app-{variant}.log")
                try:
                    for workers in (0, 2):
                        found = run(hosts, tmp, token, args.duration, workers)
                        where = "2 load workers" if workers else "the tool's host"
                        counts = f"{found['sent']} / {found['merged']}" if workers else "-"
                        print(f"| {variant} | {where} | {found['verdict']} | "
                              f"{found['rps']:,.0f} | {found['p50']:.1f} / {found['p99']:.1f} "
                              f"| {counts} |", flush=True)
                finally:
                    app.stop()
    finally:
        net.close()
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
