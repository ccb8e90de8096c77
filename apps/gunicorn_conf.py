"""gunicorn settings for the probe's apps (sample app or the user's) on gevent workers.

This file runs in the master: nothing here may import an app, a driver or gevent.monkey at
module level, since importing psycopg there is exactly the `--preload` trap that the `preload`
variant measures. The hooks import the probe's agent in the worker, after gevent patched.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _pin_the_tool() -> None:
    """gunicorn has put --chdir (the user's folder, or a checkout of this tool) first on
    sys.path before reading this file, and there a package called `probe` would shadow the
    tool's. Import the tool's package now, from where the tool runs: every later
    `import probe...` in the arbiter and its forked workers then resolves to it. The folder
    goes off sys.path again, so that nothing else of it (an `apps` folder of a checkout) can
    shadow the user's modules."""
    home = os.environ.get("GEVENT_PROBE_HOME")
    if not home or "probe" in sys.modules:
        return
    sys.path.insert(0, home)
    try:
        import probe  # noqa: F401
    finally:
        sys.path.remove(home)


_pin_the_tool()
# Underscored: gunicorn reads every public name here as a setting (it has one called protocol).
from probe import protocol as _env  # noqa: E402 - from the tool, now pinned

_port = os.environ.get(_env.PORT)
if not _port:
    raise RuntimeError("set GEVENT_PROBE_PORT to the port gunicorn should listen on")

worker_class = "gevent"
bind = f"127.0.0.1:{int(_port)}"
workers = int(os.environ.get(_env.WORKERS) or 1)
worker_connections = int(os.environ.get(_env.WORKER_CONNECTIONS) or 1000)
preload_app = os.environ.get(_env.PRELOAD) == "1"
accesslog = None  # one log line per request would cost more than SELECT 1 itself
errorlog = "-"
loglevel = "warning"
graceful_timeout = 5  # in-flight requests are at most a 10 s pg_sleep; don't hang the run
# A blocking driver holds the hub for the whole probe (C x sleep per round): no heartbeat to
# the arbiter meanwhile, which must not kill the worker for it.
timeout = int(os.environ.get(_env.WORKER_TIMEOUT) or 60)


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
