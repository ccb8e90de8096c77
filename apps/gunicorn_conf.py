"""gunicorn settings for the probe's apps (sample app or the user's) on gevent workers.

This file runs in the master: nothing here may import an app, a driver or gevent.monkey at
module level, since importing psycopg there is exactly the `--preload` trap that the `preload`
variant measures. The hooks import the probe's agent in the worker, after gevent patched.
"""

from __future__ import annotations

import os
from typing import Any

_port = os.environ.get("GEVENT_PROBE_PORT")
if not _port:
    raise RuntimeError("set GEVENT_PROBE_PORT to the port gunicorn should listen on")

worker_class = "gevent"
bind = f"127.0.0.1:{int(_port)}"
workers = int(os.environ.get("GEVENT_PROBE_WORKERS") or 1)
worker_connections = int(os.environ.get("GEVENT_PROBE_WORKER_CONNECTIONS") or 1000)
preload_app = os.environ.get("GEVENT_PROBE_PRELOAD") == "1"
accesslog = None  # one log line per request would cost more than SELECT 1 itself
errorlog = "-"
loglevel = "warning"
graceful_timeout = 5  # in-flight requests are at most a 10 s pg_sleep; don't hang the run


def post_fork(server: Any, worker: Any) -> None:
    # In the new worker, before it patches: die with the arbiter, even if it is SIGKILLed.
    from probe.lifecycle import die_with_parent

    die_with_parent()


def post_worker_init(worker: Any) -> None:
    # gevent has patched and the app is loaded: start watching the hub from the first request.
    from probe import agent

    agent.start()


def worker_exit(server: Any, worker: Any) -> None:
    # gunicorn also calls this in the master for a worker that is already gone: skip that.
    if worker.pid != os.getpid():
        return
    from probe import agent

    agent.dump_if_started()
