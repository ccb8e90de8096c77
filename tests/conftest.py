"""Shared fixtures: a real embedded PostgreSQL, the tool as a wheel in a fresh venv, and a
check that nothing outlives a test."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from probe.lifecycle import TEMP_PREFIXES
from probe.postgres import EphemeralCluster

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def cluster():
    with EphemeralCluster() as pg:
        yield pg


UV = [sys.executable, "-m", "uv"]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel users get from `pip install gevent-probe`, built from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([*UV, "build", "--wheel", "--quiet", "--out-dir", str(out), str(ROOT)],
                   check=True, timeout=300)
    (found,) = out.glob("gevent_probe-*.whl")
    return found


def venv_with(path: Path, *requirements: str, constraints: bool = True) -> Path:
    """A fresh venv at `path` with these requirements (uv: from its cache after the first)."""
    subprocess.run([*UV, "venv", "--quiet", "--python", sys.executable, str(path)],
                   check=True, timeout=120)
    extra = ["--constraint", str(ROOT / "constraints.txt")] if constraints else []
    subprocess.run([*UV, "pip", "install", "--quiet", "--python", str(path / "bin/python"),
                    *extra, *requirements], check=True, timeout=600)
    return path


def probe_cli(*args: str, timeout: float = 300, env: dict | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          cwd=cwd or ROOT)


def temp_clusters() -> set[str]:
    """The tool's temporary folders (clusters, passfiles, run scratch) that exist now."""
    return {path for prefix in TEMP_PREFIXES for path in glob.glob(f"/tmp/{prefix}*")}


def left_behind(before: set[str]) -> set[str]:
    """Folders that appeared since `before`; stale ones a run swept away are not counted."""
    return temp_clusters() - before


def leftover_processes(marker: str) -> list[str]:
    """Processes whose command line mentions `marker` (a temp dir, a module name)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline and proc.pid != os.getpid():
            found.append(f"{proc.pid} {cmdline}")
    return found


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true",
                     help="also run the slow end-to-end tests (what CI runs)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--all"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]
