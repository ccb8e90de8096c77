"""Locust in an open model: requests start on a fixed schedule, whatever the responses do.

A closed model (N users, each waiting for its answer) measures a saturated worker's queue and
slows down with the app it measures (coordinated omission). Here, as in wrk2 or k6's
constant-arrival-rate, request i is due at t0 + i / rate; it is sent by a greenlet of its own,
and its latency counts from when it was due (hdr.py reads the intended time from the request's
context), so a stall of the app costs every request scheduled during it.

One Scheduler user per locust process sends that process's share of the rate. Routes follow
the built-in scenarios: a share GEVENT_PROBE_SLOW_SHARE of the requests (spread evenly) go to
/sleep?ms=GEVENT_PROBE_SLOW_MS, the rest to /select1 (share 0: select1 only). At most
GEVENT_PROBE_MAX_IN_FLIGHT requests are in flight per process (the connections of its
client); past that, requests wait for a connection, and that wait counts in their latency.
If the process cannot even start them on time (its CPU is saturated, or too many are
pending), hdr.py records by how much each started late, and the tool says so.

Environment: GEVENT_PROBE_RATE (requests/s over all processes), GEVENT_PROBE_SCHEDULERS (the
locust processes), GEVENT_PROBE_DURATION_S (the load window: nothing is due after it),
GEVENT_PROBE_SLOW_SHARE, GEVENT_PROBE_SLOW_MS, GEVENT_PROBE_MAX_IN_FLIGHT.
"""

from __future__ import annotations

import math
import os
import time

import gevent
from gevent.pool import Pool
from locust import FastHttpUser, constant, task
from probe.locustfiles.hdr import INTENDED_KEY, RECORDER, setting

from probe import protocol

RATE = float(os.environ.get(protocol.RATE) or 100)
SCHEDULERS = max(1, int(os.environ.get(protocol.SCHEDULERS) or 1))
SLOW_SHARE = float(os.environ.get(protocol.SLOW_SHARE) or 0)
SLOW_MS = float(os.environ.get(protocol.SLOW_MS) or 50)
MAX_IN_FLIGHT = max(1, int(os.environ.get(protocol.MAX_IN_FLIGHT) or 50))
DURATION_S = float(os.environ.get(protocol.DURATION_S) or 10)
MAIN_ROUTE = os.environ.get(protocol.MAIN_ROUTE) or "select1"  # "work": --workload
MAX_PENDING = 10_000  # greenlets waiting for a connection, per process: memory stays bounded


def is_slow(i: int, share: float = SLOW_SHARE) -> bool:
    """Request i goes to the slow route: exactly `share` of them, spread evenly."""
    return share > 0 and math.floor((i + 1) * share) > math.floor(i * share)


class Scheduler(FastHttpUser):
    # Read where the user runs, when the test runs (hdr.setting): a worker on another host
    # has the master's settings only then. fixed_count is the master's, from its environment.
    fixed_count = SCHEDULERS  # one per locust process
    wait_time = constant(0)

    def __init__(self, *args: object, **kwargs: object) -> None:
        # connections of this process's client
        self.concurrency = max(1, int(setting(protocol.MAX_IN_FLIGHT, str(MAX_IN_FLIGHT))))
        self.slow_share = float(setting(protocol.SLOW_SHARE, str(SLOW_SHARE)))
        self.slow_ms = float(setting(protocol.SLOW_MS, str(SLOW_MS)))
        self.main_route = setting(protocol.MAIN_ROUTE, MAIN_ROUTE)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    @task
    def send_on_schedule(self) -> None:
        rate = float(setting(protocol.RATE, str(RATE)))
        schedulers = max(1, int(setting(protocol.SCHEDULERS, str(SCHEDULERS))))
        duration_s = float(setting(protocol.DURATION_S, str(DURATION_S)))
        interval = schedulers / rate
        pending = Pool(MAX_PENDING)
        start = time.perf_counter()
        last = int(duration_s * rate / schedulers)  # no request is due after the load window
        for i in range(last):
            due = start + i * interval
            ahead = due - time.perf_counter()
            if ahead > 0:
                gevent.sleep(ahead)
            pending.spawn(self._send, i, due)  # waits only when MAX_PENDING are pending
        pending.join()  # locust's -t ends the test; its --stop-timeout bounds this wait

    def _send(self, i: int, due: float) -> None:
        RECORDER.record_start(time.perf_counter() - due)
        if is_slow(i, self.slow_share):
            self.client.get(f"/sleep?ms={self.slow_ms:g}", name="sleep",
                            context={INTENDED_KEY: due})
        else:
            self.client.get(f"/{self.main_route}", name=self.main_route,
                            context={INTENDED_KEY: due})
