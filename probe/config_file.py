"""Settings from a config file: `[tool.gevent-probe]` in pyproject.toml, or a TOML file
given with --config. Top-level keys apply to every command, a table per command (`[run]`,
`[gate]`) to that one; values are checked like flags, by probe.settings."""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from probe.errors import ProbeError


def load_config(path: Path | None, command: str, known: Collection[str],
                mode: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The values a config file sets for `command` (top-level keys, then the tables), and for
    each, where it was set ("duration in pyproject.toml [tool.gevent-probe]"); `known`: the
    settings' names, for which a key is checked."""
    data, source = _read_toml(path)
    if data is None:
        return {}, {}
    values = {k: v for k, v in data.items() if not isinstance(v, dict)}
    gate_table = data.get("gate", {}) if isinstance(data.get("gate"), dict) else {}
    tables = [command] if command != "gate" else [mode or gate_table.get("mode") or "bench",
                                                  "gate"]
    for table in tables:
        section = data.get(table, {})
        if not isinstance(section, dict):
            raise ProbeError(f"[{table}] in {source} must be a table")
        values.update(section)
    out, origins = {}, {}
    for key, value in values.items():
        name = key.replace("-", "_")
        name = "json_path" if name == "json" else name
        if name not in known:
            raise ProbeError(f"unknown setting {key!r} in {source}")
        out[name] = value
        origins[name] = f"{key} in {source}"
    return out, origins


# Settings a flag gives as a comma list, which a config file may also give as a TOML list.
COMMA_LISTS = ("variants", "fail_on", "versions")
# ... and as a TOML table of route = ms (max-p99 = {select1 = 25, sleep = 150}).
ROUTE_LIMITS = ("max_p99", "max_avg")


def from_toml(name: str, value: Any, where: str) -> Any:
    """A config file's value in the form the flag takes."""
    if name in COMMA_LISTS and isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise ProbeError(f"{where} must be a list of names, got {value!r}")
        return ",".join(value)
    if name in ROUTE_LIMITS and isinstance(value, dict):
        return ",".join(f"{route}={ms}" for route, ms in value.items())
    if name in ROUTE_LIMITS and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # `max-p99 = 25`
    return value


def _read_toml(path: Path | None) -> tuple[dict[str, Any] | None, str]:
    explicit = path is not None
    path = path or Path("pyproject.toml")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if explicit:
            raise ProbeError(f"cannot read config {path}: no such file") from None
        return None, str(path)
    except OSError as ex:
        raise ProbeError(f"cannot read config {path}: {ex.strerror}") from None
    except tomllib.TOMLDecodeError as ex:
        raise ProbeError(f"invalid TOML in {path}: {ex}") from None
    if path.name == "pyproject.toml" or "tool" in data:
        tool = data.get("tool", {}).get("gevent-probe")
        if tool is None:
            return (None, str(path)) if not explicit else ({}, str(path))
        return tool, f"{path} [tool.gevent-probe]"
    return data, str(path)
