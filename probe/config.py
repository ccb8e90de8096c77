"""Run settings: defaults, overridden by an optional TOML file, overridden by flags.

The TOML file has one table per command, e.g.

    [bench]
    variants = "psycopg2,psycopg-binary"
    concurrency = 32
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.errors import ProbeError

DSN_ENV = "GEVENT_PROBE_DSN"


@dataclass(frozen=True)
class BenchConfig:
    variants: str | None = None  # comma-separated names; None = all of the mode's
    concurrency: int = 16
    queries: int | None = 300  # per connection; ignored when duration is set
    duration: float | None = None  # seconds of SELECT 1 load, instead of a query count
    sleep_ms: float = 50.0
    rounds: int = 3
    block_threshold_ms: float = 10.0
    dsn: str | None = None
    output_dir: Path = Path("reports")
    json_path: Path | None = None
    worker_timeout_s: float = 120.0

    def validate(self) -> BenchConfig:
        _positive("concurrency", self.concurrency)
        if self.duration is None:
            _positive("queries", self.queries)
        else:
            _positive("duration", self.duration)
        _positive("sleep-ms", self.sleep_ms)
        _positive("rounds", self.rounds)
        _positive("block-threshold-ms", self.block_threshold_ms)
        if self.block_threshold_ms < 2:
            raise ProbeError("--block-threshold-ms must be at least 2 (heartbeat: 1 ms)")
        return self


def _positive(name: str, value: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ProbeError(f"--{name} must be a positive number, got {value!r}")


def load_table(path: Path | None, table: str) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as ex:
        raise ProbeError(f"cannot read config {path}: {ex.strerror}") from None
    except tomllib.TOMLDecodeError as ex:
        raise ProbeError(f"invalid TOML in {path}: {ex}") from None
    section = data.get(table, {})
    if not isinstance(section, dict):
        raise ProbeError(f"[{table}] in {path} must be a table")
    return {key.replace("-", "_"): value for key, value in section.items()}


def build(cls: type, file_values: dict[str, Any], flag_values: dict[str, Any]) -> Any:
    """cls(**defaults <- file <- flags), rejecting unknown keys with their name."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    merged: dict[str, Any] = {}
    for key, value in {**file_values, **{k: v for k, v in flag_values.items()
                                          if v is not None}}.items():
        if key not in names:
            raise ProbeError(f"unknown setting {key!r}")
        merged[key] = Path(value) if key.endswith(("_dir", "_path")) else value
    if merged.get("dsn") is None and os.environ.get(DSN_ENV):
        merged["dsn"] = os.environ[DSN_ENV]
    try:
        return cls(**merged)
    except TypeError as ex:
        raise ProbeError(f"invalid settings: {ex}") from None


@dataclass(frozen=True)
class RunConfig:
    """Settings of `gevent-probe run` (system mode), flat as in flags and the [run] table."""

    variants: str | None = None
    users: int = 50
    spawn_rate: float = 50.0
    duration: float = 10.0
    scenario: str = "mixed"
    locustfile: str | None = None
    locust_processes: int = 1
    locust_master_bind: str | None = None
    slow_share: float = 0.1
    slow_ms: int = 50
    workers: int = 1
    worker_connections: int = 1000
    pool: str = "probe"
    pool_size: int = 10
    app: str | None = None
    chdir: str | None = None
    probe_concurrency: int = 16
    sleep_ms: float = 50.0
    rounds: int = 3
    block_threshold_ms: float = 10.0
    dsn: str | None = None
    output_dir: Path = Path("reports")
    json_path: Path | None = None

    def validate(self) -> RunConfig:
        for name in ("users", "spawn_rate", "duration", "locust_processes", "workers",
                     "worker_connections", "pool_size", "probe_concurrency", "sleep_ms",
                     "rounds", "slow_ms", "block_threshold_ms"):
            _positive(name.replace("_", "-"), getattr(self, name))
        if self.block_threshold_ms < 2:
            raise ProbeError("--block-threshold-ms must be at least 2 (heartbeat: 1 ms)")
        if self.duration > 3600:
            raise ProbeError("--duration is capped at 3600 s: load runs must stay bounded")
        if not 0 <= self.slow_share < 1:
            raise ProbeError(f"--slow-share must be in [0, 1), got {self.slow_share}")
        if self.pool not in ("probe", "native"):
            raise ProbeError(f"--pool must be 'probe' or 'native', got {self.pool!r}")
        if self.app is not None and ":" not in self.app:
            raise ProbeError(f"--app must look like module:callable, got {self.app!r}")
        if self.locustfile is not None and not Path(self.locustfile).is_file():
            raise ProbeError(f"--locustfile {self.locustfile} not found")
        if self.chdir is not None and not Path(self.chdir).is_dir():
            raise ProbeError(f"--chdir {self.chdir} is not a directory")
        return self
