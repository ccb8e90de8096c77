"""Soak the gate: the same `gate --mode bench` N times in a row, as a CI runner would.

    .venv/bin/python benchmarks/gate_soak.py [--runs 20] [--controls 10]

Prints the false failures (exit codes other than 0 on the healthy drivers), each variant's
p99 spread over the runs (min / median / max), any process left behind and any growth of
the temporary files; then gates each control alone --controls times (each must exit 1 with
its verdict).
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psutil

HEALTHY = "psycopg2-green,psycopg-binary,psycopg-c,psycopg-python"
CONTROLS = {"wait_c": "hub-blocking", "import-before-patch": "hub-blocking",
            "partial-block": "hub-blocking", "spin-wait": "busy-wait"}
LEFTOVER_MARKERS = ("gunicorn", "locust", "probe.worker", "gevent-probe-pg-")


def gate(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probe", "gate", "--mode", "bench",
                           "--output-dir", str(out), *args],
                          capture_output=True, text=True, timeout=900)


def leftovers() -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if any(m in line for m in LEFTOVER_MARKERS) and "gate_soak" not in line:
            found.append(f"{p.pid} {line[:80]}")
    return found


def temp_files() -> int:
    return len(glob.glob(f"{tempfile.gettempdir()}/gevent-probe-*"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--controls", type=int, default=10)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="soak-"))
    files_before = temp_files()
    p99s: dict[str, list[float]] = defaultdict(list)
    failures, seconds = [], []
    for i in range(args.runs):
        t0 = time.perf_counter()
        proc = gate(out / f"healthy-{i}", "--variants", HEALTHY)
        seconds.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            failures.append(f"run {i + 1}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
        for results in (out / f"healthy-{i}").glob("*/results.json"):
            for v in json.loads(results.read_text())["variants"]:
                p99s[v["name"]].append(v["measured"]["db"]["latency_ms"]["p99"])
        print(f"run {i + 1}/{args.runs}: exit {proc.returncode} in {seconds[-1]:.1f} s",
              flush=True)
    print(f"\ngate --mode bench --variants {HEALTHY} (3 interleaved repeats each), "
          f"{args.runs} runs: {len(failures)} false failure(s); "
          f"median {statistics.median(seconds):.1f} s per gate")
    for line in failures:
        print(f"  {line}")
    print("\n| variant | p99 min | median | max (ms) |\n|---|---|---|---|")
    for name, values in p99s.items():
        print(f"| {name} | {min(values):.3f} | {statistics.median(values):.3f} | "
              f"{max(values):.3f} |")
    print(f"\nleft running: {leftovers() or 'nothing'}; temporary files: {files_before} "
          f"before, {temp_files()} after")
    if args.controls:
        print(f"\neach control gated alone, {args.controls} times:")
        for control, verdict in CONTROLS.items():
            right = 0
            for i in range(args.controls):
                proc = gate(out / f"{control}-{i}", "--variants", control, "--repeat", "1")
                right += proc.returncode == 1 and f"verdict: {verdict}" in proc.stderr
            print(f"  {control}: exit 1 with {verdict}, {right} of {args.controls}", flush=True)


if __name__ == "__main__":
    main()
