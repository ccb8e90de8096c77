"""gunicorn settings for the probe app (apps.probe_app:application) on gevent workers.

Nothing here may import the app, a driver or gevent.monkey: this file runs in the master, and
importing psycopg there is exactly the `--preload` trap the `preload` control measures.
"""

from __future__ import annotations

import os
import sys
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


def worker_exit(server: Any, worker: Any) -> None:
    # gunicorn also calls this in the master for a worker that is already gone: skip that.
    if worker.pid != os.getpid():
        return
    app = sys.modules.get("apps.probe_app")
    if app is not None:  # None when the app failed to load: nothing to report
        app.on_worker_exit()
