"""Bring your own app: the user's WSGI callable, with the probe's routes beside it.

`gevent-probe run --app module:callable` serves this module. Requests under /_probe/ go to the
probe's agent in the worker (diag, measure, reset); everything else goes to the user's app.
The heartbeat, the watchdog and the connection-lock timing run in the worker either way, so
hub blocking or a shared connection in the user's own code shows up too.

Nothing here imports a driver: under `--preload` the master imports this module, and an import
of ours would change the answer to the user's question ("is my app safe under --preload?").
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from typing import Any

from probe import agent, drivers, protocol
from probe.variants import BY_NAME


def _user_app() -> Callable[..., Iterable[bytes]]:
    module_name, _, attr = os.environ[protocol.USER_APP].partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


USER_APP = _user_app()
# The compute control, in your app too: every request first computes without yielding.
WORK = (drivers.computation(float(os.environ.get(protocol.COMPUTE_MS) or 15))
        if BY_NAME[os.environ[protocol.VARIANT]].compute else None)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    probe = agent.current()
    if environ.get("PATH_INFO", "").startswith(agent.PREFIX + "/"):
        return probe.routes(environ, start_response)
    return probe.serve(USER_APP, environ, start_response, WORK)


application.counts_itself = True  # type: ignore[attr-defined]  # (probe.gunicorn_hook)
