"""Load generator vs wrk on the same app: prints RPS and locust's CPU share.

    .venv/bin/python benchmarks/loadgen_vs_wrk.py    (needs wrk: apt-get install wrk)

One gunicorn gevent worker (psycopg-binary) on an embedded PostgreSQL; 50 users/connections
on /select1 for 10 s each: locust in 1 process, locust in 2 processes, then wrk -t1 -c50.
"""

import re
import subprocess
import tempfile
from pathlib import Path

from probe.load import run_locust
from probe.postgres import EphemeralCluster
from probe.server import SAMPLE_APP, Gunicorn
from probe.settings import build
from probe.variants import BY_NAME

variant = BY_NAME["psycopg-binary"]
with EphemeralCluster() as pg, tempfile.TemporaryDirectory() as tmp:
    env = {**variant.environment(), "GEVENT_PROBE_VARIANT": variant.name,
           "GEVENT_PROBE_DSN": pg.dsn}
    with Gunicorn(app=SAMPLE_APP, env=env, stats_dir=Path(tmp)) as app:
        for processes in (1, 2):
            settings = build("run", {"users": 50, "duration": 10.0, "scenario": "select1",
                                     "locust_processes": processes})
            outcome = run_locust(settings, app.url, Path(tmp))
            rps = outcome.data["requests"]["select1"] / 10
            print(f"locust, {processes} process(es): {rps:,.0f} RPS; busiest locust process "
                  f"{100 * outcome.max_core_share:.0f}% of a core", flush=True)
        out = subprocess.run(["wrk", "-t1", "-c50", "-d10s", app.url + "/select1"],
                             capture_output=True, text=True, check=True).stdout
        wrk_rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
        print(f"wrk -t1 -c50 -d10s: {wrk_rps:,.0f} RPS")
