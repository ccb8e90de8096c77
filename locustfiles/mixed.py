"""Locust: most users call GET /select1 back to back, a few call a slow server-side sleep.

The slow users hold a connection (and, with a blocking driver, the whole gevent hub) for
GEVENT_PROBE_SLOW_MS per request, which is what makes the fast users' latency reveal it.
With N users (-u), max(1, round(N * GEVENT_PROBE_SLOW_SHARE)) are slow (exactly, through
locust's fixed_count), the rest call /select1; a share of 0 means no slow user.

Environment: GEVENT_PROBE_SLOW_SHARE (default 0.1), GEVENT_PROBE_SLOW_MS (default 50),
GEVENT_PROBE_LOAD_OUT (see hdr.py, which the tool loads before this file).
"""

from __future__ import annotations

import math
import os
from typing import Any

from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from probe.locustfiles.hdr import setting

from probe import protocol

SLOW_SHARE = float(os.environ.get(protocol.SLOW_SHARE) or 0.1)
SLOW_MS = float(os.environ.get(protocol.SLOW_MS) or 50)


def slow_users(total: int, share: float = SLOW_SHARE) -> int:
    """How many of `total` users are slow: max(1, round(total * share)), rounding half up."""
    if total <= 0 or share <= 0:
        return 0
    return min(total, max(1, math.floor(total * share + 0.5)))


class Select1User(FastHttpUser):
    wait_time = constant(0)
    # Weights only matter when the user count is unknown at start (web UI); see _split_users.
    weight = max(1, round(100 * (1 - SLOW_SHARE)))

    @task
    def select1(self) -> None:
        self.client.get("/select1", name="select1")


class SlowUser(FastHttpUser):
    wait_time = constant(0.2)
    weight = max(0, round(100 * SLOW_SHARE))

    @task
    def sleep(self) -> None:
        slow_ms = float(setting(protocol.SLOW_MS, str(SLOW_MS)))  # the master's, if remote
        self.client.get(f"/sleep?ms={slow_ms:g}", name="sleep")


@events.init.add_listener
def _split_users(environment: Environment, **_kw: Any) -> None:
    # fixed_count users are spawned first and exactly; Select1User (weight, no fixed_count)
    # takes all the others. Set here because -u is only known once options are parsed; the
    # master's dispatcher, the one that decides, reads it when the test starts.
    options = environment.parsed_options
    total = getattr(options, "num_users", None) if options is not None else None
    if total:
        SlowUser.fixed_count = slow_users(int(total))
        if SlowUser.fixed_count == 0:
            SlowUser.weight = 0  # locust drops classes with neither weight nor fixed_count
