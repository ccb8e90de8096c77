"""Locust: every user runs GET /work back to back, one unit of the --workload each (name
"work"); see probe.workloads for what a unit is.

Environment: GEVENT_PROBE_LOAD_OUT (see hdr.py, which the tool loads before this file).
"""

from __future__ import annotations

from locust import FastHttpUser, constant, task


class WorkUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def work(self) -> None:
        self.client.get("/work", name="work")
