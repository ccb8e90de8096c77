"""Bring your own app: the user's WSGI callable, with the probe's routes beside it.

`gevent-probe run --app module:callable` serves this module. Requests under /_probe/ go to
the probe app (diag, stats, healthz, and the serialisation probe's /sleep, using the same
driver module the user's app imports, so the same wait function); everything else goes to
the user's app. The heartbeat and the stall watchdog run in the worker either way, so hub
blocking caused by the user's own code shows up too.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from typing import Any

from apps import probe_app

PREFIX = "/_probe"


def _user_app() -> Callable[..., Iterable[bytes]]:
    spec = os.environ.get("GEVENT_PROBE_USER_APP", "")
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise RuntimeError(f"GEVENT_PROBE_USER_APP must be module:callable, got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


USER_APP = _user_app()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path.startswith(PREFIX + "/"):
        return probe_app.application({**environ, "PATH_INFO": path[len(PREFIX):]},
                                     start_response)
    probe_app.worker_state().count("app")  # also starts the heartbeat and watchdog
    return USER_APP(environ, start_response)
