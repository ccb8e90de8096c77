"""`gevent-probe load-worker --master HOST:PORT`: this host's share of a run's load.

A locust worker (`locust --worker`, locust's own distribution, not a protocol of ours) with
the tool's hooks: it fetches the run's locustfiles from the master (`-f -`), gets the
scenario's settings with each test (locustfiles/hdr.py), and ships exact histograms with every
stats report, which the master adds bucket by bucket. A run starts a locust master for each
load phase (every variant, and its warm-up), and locust ends its workers with the master; so
this command starts a fresh worker after each phase, until it is stopped (Ctrl-C, SIGTERM) or
has served --runs phases. Each phase ends with one line: the requests this host sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

from probe import protocol
from probe.errors import ProbeError
from probe.lifecycle import die_with_parent, owned_scratch, stop_group, sweep_stale
from probe.load import master_bind

RETRY_S = 1.0  # between a master that is gone (the run's next phase starts it) and a retry


def serve(master: str, runs: int | None = None, processes: int = 1,
          say: Callable[[str], None] = print) -> int:
    """Serve load phases of the master at `master`; returns how many were served."""
    try:
        host, port = master_bind(master)
    except ValueError:
        raise ProbeError(f"--master must look like HOST:PORT, got {master!r}") from None
    served = 0
    say(f"load worker for the locust master at {host}:{port}; Ctrl-C stops it")
    while runs is None or served < runs:
        sent = _one_phase(host, port, processes)
        if sent is None:
            time.sleep(RETRY_S)
            continue
        served += 1
        say(f"phase {served}: sent {sent} requests")
    return served


def _one_phase(host: str, port: int, processes: int) -> int | None:
    """One locust worker, until its master ends the test; the requests it sent, or None when
    no test ran (no master yet, or it went away)."""
    sweep_stale()  # what a worker killed with -9 left
    with owned_scratch("gevent-probe-load-worker-") as tmp:
        out = tmp / "worker.json"
        argv = [sys.executable, "-m", "locust", "--worker", "--master-host", host,
                "--master-port", str(port), "-f", "-", "--loglevel", "WARNING"]
        if processes > 1:
            argv += ["--processes", str(processes)]
        # TMPDIR: locust writes the master's locustfiles there; each worker its own copy
        env = {**os.environ, protocol.WORKER_OUT: str(out), "TMPDIR": str(tmp)}
        with open(tmp / "locust.log", "wb") as log:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp,
                                    preexec_fn=die_with_parent)
            try:
                proc.wait()
            finally:
                stop_group(proc, timeout=5)
        try:
            sent: int = json.loads(out.read_text())["sent"]
        except (OSError, ValueError, KeyError):
            return None
        return sent
