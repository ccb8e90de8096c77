"""A deployed app's gunicorn config with gevent-probe's agent: `gevent-probe run --target`.

    GEVENT_PROBE_AGENT_TOKEN=$(openssl rand -hex 16) \
        gunicorn -c examples/deployed_gunicorn_conf.py yourapp:app

Only the last line is gevent-probe's. Without GEVENT_PROBE_AGENT_TOKEN in the app's environment
it does nothing (no route, no measuring), so it can stay in a staging build. The agent's
probe connects with GEVENT_PROBE_DSN, else DATABASE_URL; it reports the driver the app
imported (GEVENT_PROBE_VARIANT names it otherwise). The tests start the sample app with this
file (probe.apps.probe_app:application) inside a network namespace of their own.
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
worker_class = "gevent"
workers = int(os.environ.get("WORKERS", "2"))
timeout = 120  # a driver that blocks the hub starves gunicorn's heartbeat during the probe

from probe.gunicorn_hook import post_worker_init  # noqa: E402, F401  - gevent-probe's agent
