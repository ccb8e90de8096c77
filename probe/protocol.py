"""What the tool tells the processes it starts: every GEVENT_PROBE_* environment variable,
and the agent's routes.

The measured processes (a bench worker, gunicorn's master and workers, locust) are started by
the tool and configured through their environment, since gunicorn and locust load our code
by file name and pass nothing else. Each variable is declared once here, with who reads it and
what it means; code names them through these constants, never as strings
(tests/test_protocol.py holds the sources to that). The messages on a bench worker's pipes are
probe.messages's WorkerJob (stdin) and WorkerReply (its pipe), through the same to_dict /
from_dict as results. The agent in every gunicorn worker answers the tool on the routes
declared at the end (probe.agent serves them, probe.server and probe.run_transport call them).

Nothing here imports anything: gunicorn's config file and the locustfiles import it early.
"""

from __future__ import annotations

# -- set by users -----------------------------------------------------------------------------
DSN = "GEVENT_PROBE_DSN"  # your server (--dsn); the probe's own, set for the measured processes
PG_BINDIR = "GEVENT_PROBE_PG_BINDIR"  # PostgreSQL server binaries to start a throwaway cluster
CACHE = "GEVENT_PROBE_CACHE"  # where matrix keeps one virtual environment per release
TEST_DSN = "GEVENT_PROBE_TEST_DSN"  # the tests' own server, instead of one they start

# -- the measured app (gunicorn's workers: probe.agent, apps/) ------------------------------
VARIANT = "GEVENT_PROBE_VARIANT"  # the variant measured: its driver, import order, control
USER_APP = "GEVENT_PROBE_USER_APP"  # --app MODULE:ATTR, mounted beside the probe's routes
CONNECTIONS = "GEVENT_PROBE_CONNECTIONS"  # "per-greenlet" (a pool) or "shared" (one per worker)
POOL = "GEVENT_PROBE_POOL"  # "probe" (our pool) or "native" (psycopg_pool / psycopg2.pool)
POOL_SIZE = "GEVENT_PROBE_POOL_SIZE"  # connections per worker
WORKLOAD = "GEVENT_PROBE_WORKLOAD"  # what /work runs (probe.workloads)
BLOCK_THRESHOLD_MS = "GEVENT_PROBE_BLOCK_THRESHOLD_MS"  # a run longer than this held the hub
PARTIAL_BLOCK_MS = "GEVENT_PROBE_PARTIAL_BLOCK_MS"  # the partial-block control's block
COMPUTE_MS = "GEVENT_PROBE_COMPUTE_MS"  # the compute control's work per request
DEADLOCK_AFTER_S = "GEVENT_PROBE_DEADLOCK_AFTER_S"  # no progress this long, work pending
STATS_DIR = "GEVENT_PROBE_STATS_DIR"  # where each worker leaves worker-<pid>.json at exit
WATCH = "GEVENT_PROBE_WATCH"  # "0": answer, watch nothing (benchmarks/overhead.py only)
# Parts of the watch left out, a comma list of probe.monitor.PARTS (benchmarks/overhead.py
# only: what each part costs)
WATCH_WITHOUT = "GEVENT_PROBE_WATCH_WITHOUT"

# -- gunicorn's master (apps/gunicorn_conf.py) ------------------------------------------------
HOME = "GEVENT_PROBE_HOME"  # the folder the tool's package is imported from (never shadowed)
PORT = "GEVENT_PROBE_PORT"  # the loopback port to listen on
WORKERS = "GEVENT_PROBE_WORKERS"  # gunicorn workers
WORKER_CONNECTIONS = "GEVENT_PROBE_WORKER_CONNECTIONS"  # gevent's connections per worker
PRELOAD = "GEVENT_PROBE_PRELOAD"  # "1": --preload (the app is imported in the master)
WORKER_TIMEOUT = "GEVENT_PROBE_WORKER_TIMEOUT"  # gunicorn's --timeout, s

# -- locust (locustfiles/) --------------------------------------------------------------------
LOAD_OUT = "GEVENT_PROBE_LOAD_OUT"  # where locust leaves its histograms (locustfiles/hdr.py)
SLOW_MS = "GEVENT_PROBE_SLOW_MS"  # the slow route's pg_sleep
SLOW_SHARE = "GEVENT_PROBE_SLOW_SHARE"  # the share of users (or requests) on the slow route
MAIN_ROUTE = "GEVENT_PROBE_MAIN_ROUTE"  # "select1", or "work" under --workload
RATE = "GEVENT_PROBE_RATE"  # --rate: requests/s over all locust processes (open model)
SCHEDULERS = "GEVENT_PROBE_SCHEDULERS"  # locust processes that share the rate
MAX_IN_FLIGHT = "GEVENT_PROBE_MAX_IN_FLIGHT"  # requests in flight per locust process, at most
DURATION_S = "GEVENT_PROBE_DURATION_S"  # the load window: nothing is due after it
# The settings above as one JSON option of the master, which locust forwards to its workers
# with the test: a worker on another host (gevent-probe load-worker) has no environment of ours.
LOAD_OPTION = "--gevent-probe-load"
WORKER_OUT = "GEVENT_PROBE_WORKER_OUT"  # a load-worker's own count (never LOAD_OUT: forked
# workers of --locust-processes inherit that one, and must not overwrite the master's file)
JOINED = ".joined"  # beside LOAD_OUT: the workers that joined the master so far (a JSON list)

# -- a deployed app that loads the agent itself (probe.gunicorn_hook; run --target) -----------
# The agent's routes exist only when this is set, and answer only requests that carry it in
# TOKEN_HEADER. The tool reads the same variable.
AGENT_TOKEN = "GEVENT_PROBE_AGENT_TOKEN"
TOKEN_HEADER = "X-Gevent-Probe-Token"

# -- the agent's routes, in every gunicorn worker (probe.agent) -------------------------------
PROBE_PREFIX = "/_probe"  # everything under it goes to the agent, never to the app
HEALTHZ = "healthz"  # "ok": the worker serves
DIAG = "diag"  # JSON: what this worker runs (driver, wait function, patched modules, locks)
RESET = "reset"  # warm the app's pool up, then forget what was watched so far
# JSON: the in-process probe (probe.measure) with ?token=&concurrency=&sleep_ms=&rounds=; the
# token makes every worker measure once, however gunicorn spreads the requests
MEASURE = "measure"
REPORT = "report"  # JSON: the agent's report so far (run --target; a local run reads files)

DECLARED = frozenset(value for name, value in dict(globals()).items()
                     if name.isupper() and isinstance(value, str)
                     and value.startswith("GEVENT_PROBE_"))
