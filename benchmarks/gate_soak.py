"""Soak the CI use of the gate: save a baseline once, then gate separate runs against it.

    .venv/bin/python benchmarks/gate_soak.py [--bench-runs 20] [--run-runs 10]
        [--slow-runs 10] [--saves 5] [--controls 0]

Bench: `gate --variants psycopg-binary,psycopg2-green,psycopg-c --save-baseline` --saves
times (separate gates, as CI on main would: the baseline keeps each run), then
--bench-runs gates of unchanged code with `--baseline` (each must pass), then --slow-runs
gates of a slower driver build (every query --slower-driver-ms longer, 2 by default,
cooperatively: the sitecustomize in
benchmarks/slower_driver/), each of which must be `regressed` (exit 1).

Run: the same with your own app (`--app slow_app:app --chdir examples`, psycopg-binary) at a
fixed `--rate 400`: a baseline with SLOW_APP_MS=0, --run-runs gates with 0 (must pass) and
--slow-runs with SLOW_APP_MS=--slower-app-ms, 10 by default (must be `regressed`).
--modes bench or run soaks only that one.

Every gate is a real `gevent-probe gate` process, as CI runs it (its own PostgreSQL, 3
interleaved repeats). Printed per gate: exit code, verdicts and the ratios (p50 and p99:
against a saved baseline the gate holds both); then what was left behind, and last the
false failures and the slowdowns caught. --controls N also gates each control alone N
times (each must exit 1 with its verdict).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH_VARIANTS = "psycopg-binary,psycopg2-green,psycopg-c"
RUN_ARGS = ["--mode", "run", "--app", "slow_app:app", "--chdir", str(ROOT / "examples"),
            "--variants", "psycopg-binary", "--rate", "400", "--duration", "8"]
CONTROLS = {"wait_c": "hub-blocking", "import-before-patch": "hub-blocking",
            "partial-block": "hub-blocking", "compute": "computing", "spin-wait": "busy-wait"}
LEFTOVER_MARKERS = ("gunicorn", "locust", "probe.worker", "gevent-probe-pg-")


def gate(args: list[str], workdir: Path, env: dict[str, str]) -> tuple[int, dict]:
    out = workdir / f"gate-{time.monotonic_ns()}.json"
    proc = subprocess.run([sys.executable, "-m", "probe", "gate", *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=workdir,
                          env={**os.environ, **env})
    if proc.returncode not in (0, 1):
        print(proc.stderr.strip().splitlines()[-1:], file=sys.stderr)
    return proc.returncode, json.loads(out.read_text()) if out.is_file() else {}


def summary(code: int, data: dict) -> str:
    verdicts = ", ".join(f"{v['name']} {v['verdict']}" for v in data.get("variants", []))
    ratios = ", ".join(f"{c['variant']} {c['check'].replace('-ratio', '')} {c['value']:.2f}x "
                       f"({_interval(c['detail'])})" for c in data.get("checks", [])
                       if c["check"].startswith(("p50-ratio", "p99-ratio")))
    return f"exit {code}: {verdicts}; ratios {ratios or '-'}"


def soak(label: str, args: list[str], runs: int, slow_runs: int, slow_env: dict[str, str],
         workdir: Path, saves: int) -> tuple[int, int, int]:
    """(false failures, slowdowns caught, slowdowns gated) for one mode."""
    baseline = workdir / f"{label}-baseline.json"
    print(f"\n{label}:")
    for i in range(saves):
        code, data = gate([*args, "--save-baseline", str(baseline)], workdir, {})
        print(f"  baseline run {i + 1}/{saves}: {summary(code, data)}", flush=True)
    false = 0
    for i in range(runs):
        code, data = gate([*args, "--baseline", str(baseline)], workdir, {})
        false += code != 0
        print(f"  unchanged {i + 1}/{runs}: {summary(code, data)}", flush=True)
    caught = 0
    for i in range(slow_runs):
        code, data = gate([*args, "--baseline", str(baseline)], workdir, slow_env)
        regressed = code == 1 and any(v["verdict"] == "regressed"
                                      for v in data.get("variants", []))
        caught += regressed
        print(f"  slower {i + 1}/{slow_runs}: {summary(code, data)}", flush=True)
    return false, caught, slow_runs


def _interval(detail: str) -> str:
    found = re.search(r"interval ([\d.]+-[\d.]+x)", detail)
    return found.group(1) if found else "-"


def leftovers() -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if any(m in cmdline for m in LEFTOVER_MARKERS) and proc.pid != os.getpid():
            found.append(f"{proc.pid} {cmdline[:100]}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench-runs", type=int, default=20)
    parser.add_argument("--run-runs", type=int, default=10)
    parser.add_argument("--slow-runs", type=int, default=10)
    parser.add_argument("--modes", default="bench,run")
    parser.add_argument("--saves", type=int, default=5, help="runs saved into the baseline")
    parser.add_argument("--slower-driver-ms", type=float, default=2.0,
                        help="bench: what the slower driver adds to every query")
    parser.add_argument("--slower-app-ms", type=float, default=10.0,
                        help="run: what the slower app adds to every request")
    parser.add_argument("--controls", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    temp_before = set(glob.glob("/tmp/gevent-probe-*"))
    results = {}
    with tempfile.TemporaryDirectory(prefix="gate-soak-") as tmp:
        workdir = Path(tmp)
        slower = {"PYTHONPATH": str(ROOT / "benchmarks" / "slower_driver"),
                  "GEVENT_PROBE_SOAK_SLOWER_MS": f"{args.slower_driver_ms:g}"}
        modes = args.modes.split(",")
        if "bench" in modes:
            results["bench"] = soak("bench", ["--mode", "bench", "--variants", BENCH_VARIANTS],
                                    args.bench_runs, args.slow_runs, slower, workdir,
                                    args.saves)
        if "run" in modes:
            results["run"] = soak("run", RUN_ARGS, args.run_runs, args.slow_runs,
                                  {"SLOW_APP_MS": f"{args.slower_app_ms:g}"}, workdir,
                                  args.saves)
        wrong = 0
        for _ in range(args.controls):
            for name, expected in CONTROLS.items():
                code, data = gate(["--variants", name, "--repeat", "1"], workdir, {})
                got = [v["verdict"] for v in data.get("variants", [])]
                wrong += code != 1 or got != [expected]
        if args.controls:
            print(f"\ncontrols gated alone {args.controls} time(s) each: {wrong} wrong")
    left = leftovers()
    temp_after = set(glob.glob("/tmp/gevent-probe-*"))
    print(f"\n{time.perf_counter() - t0:.0f} s in all; processes left: {left or 'none'}; "
          f"temporary folders left: {sorted(temp_after - temp_before) or 'none'}")
    for label, (false, caught, slow) in results.items():
        runs = args.bench_runs if label == "bench" else args.run_runs
        print(f"{label}: slowdown caught as regressed in {caught} of {slow} gates")
        print(f"{label}: false failures on unchanged code: {false} of {runs} gates")


if __name__ == "__main__":
    main()
