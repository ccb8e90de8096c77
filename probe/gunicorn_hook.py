"""The agent in an app you run yourself (staging, a deployed build): one line of gunicorn config.

    # gunicorn.conf.py of the app (worker_class = "gevent")
    from probe.gunicorn_hook import post_worker_init  # noqa: F401

or, in a post_worker_init of your own, call `probe.gunicorn_hook.install(worker)`.

Without GEVENT_PROBE_AGENT_TOKEN in the app's environment it does nothing at all: no route,
no watching, no cost; so it is safe to leave in a staging build. With it, each worker starts
the agent (probe.agent: the hub watched from the first request, as in `run`) and answers the
agent's routes under /_probe/ only to requests that carry the token in X-Gevent-Probe-Token,
compared in constant time; any other request there gets 404, as if nothing were mounted. The
agent's answers carry measurements, never the DSN nor the environment. `gevent-probe run
--target URL`, given the same token, drives the load at the app and reads every worker.

Imported by gunicorn's master when it reads the config file: nothing here imports gevent, a
driver or the agent until a worker calls the hook (after gevent patched it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from probe import protocol

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def post_worker_init(worker: Any) -> None:
    """gunicorn's hook, in each worker once the app is loaded."""
    install(worker)


def install(worker: Any) -> bool:
    """Mount the agent in this gunicorn worker; False (and nothing done) without a token."""
    if not os.environ.get(protocol.AGENT_TOKEN):
        return False
    worker.wsgi = mounted(worker.wsgi)
    return True


def mounted(app: WSGIApp) -> WSGIApp:
    """`app` with the agent's routes beside it (which check the token: probe.agent)."""
    from probe import agent

    probe = agent.current()  # started here, in the worker: gevent has patched
    # The tool's own apps (the sample app, --app's wrapper) count their requests already.
    counted = getattr(app, "counts_itself", False)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]
                    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(agent.PREFIX + "/"):
            return probe.routes(environ, start_response)
        if counted:
            return app(environ, start_response)
        return probe.serve(app, environ, start_response)

    return application
