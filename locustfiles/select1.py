"""Locust: every user calls GET /select1 back to back (name "select1").

    GEVENT_PROBE_LOAD_OUT=load.json locust -f locustfiles/select1.py --headless -u 20 -r 20 \\
        -t 10s -H http://127.0.0.1:PORT --only-summary
"""

from __future__ import annotations

import os
import sys

# locust loads a locustfile by path, not as part of a package: make `hdr` next to it importable.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import hdr  # noqa: E402, F401 - registers the microsecond histograms
from locust import FastHttpUser, constant, task  # noqa: E402


class Select1User(FastHttpUser):
    wait_time = constant(0)

    @task
    def select1(self) -> None:
        self.client.get("/select1", name="select1")
