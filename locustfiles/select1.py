"""Locust: every user calls GET /select1 back to back (name "select1").

    GEVENT_PROBE_LOAD_OUT=load.json locust -f locustfiles/hdr.py,locustfiles/select1.py \\
        --headless -u 20 -r 20 -t 10s -H http://127.0.0.1:PORT --only-summary
"""

from __future__ import annotations

from locust import FastHttpUser, constant, task


class Select1User(FastHttpUser):
    wait_time = constant(0)

    @task
    def select1(self) -> None:
        self.client.get("/select1", name="select1")
