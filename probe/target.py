"""An app the tool did not start (`run --target URL`): asked what our own gunicorn is asked.

The app loads the agent itself (probe.gunicorn_hook) and was given a token; every request
under /_probe/ carries it. What a local run reads from files its workers leave at exit (their
reports) comes here over HTTP, from every worker: gunicorn hands each new connection to a
worker of its choosing, so we keep asking until each worker the agents name (the arbiter's
children) has answered, and the results say which never did.
"""

from __future__ import annotations

import os
from typing import Any

from probe import protocol
from probe.errors import ProbeError
from probe.server import each_worker, get_json


class DeployedApp:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.headers = {protocol.TOKEN_HEADER: token or os.environ.get(protocol.AGENT_TOKEN, "")}
        self._workers: set[int] = set()
        self._reports: list[dict[str, Any]] = []
        self.unheard: list[int] = []  # workers named by their siblings that never answered

    def diag(self) -> dict[str, Any]:
        """One worker's diag: what the app runs. A 404 is an app without the agent, or a
        token that is not the app's (the agent answers nothing else)."""
        try:
            reply: dict[str, Any] = get_json(f"{self.url}{protocol.PROBE_PREFIX}/"
                                             f"{protocol.DIAG}", headers=self.headers)
        except ProbeError as ex:
            if "404" in str(ex):
                raise ProbeError(f"{self.url} has no gevent-probe agent for this token: load "
                                 "probe.gunicorn_hook in its gunicorn config and start it with "
                                 f"the same {protocol.AGENT_TOKEN}") from None
            raise
        self._workers.update(reply.get("workers") or [reply["pid"]])
        return reply

    def each_worker(self, path: str, timeout: float = 60) -> dict[int, Any]:
        replies = each_worker(self.url, path, lambda: self._workers, timeout, self.headers)
        for reply in replies.values():
            self._workers.update(reply.get("workers") or ())
        return replies

    def worker_pids(self) -> list[int]:
        return sorted(self._workers)

    def stop(self) -> None:
        """The load is over: every worker's report so far (the app keeps running)."""
        replies = self.each_worker(f"/{protocol.REPORT}")
        self._reports = [r["report"] for _pid, r in sorted(replies.items())]
        self.unheard = sorted(self._workers - set(replies))

    def kill(self) -> None:
        """Not ours to end: a frozen app is reported, and left to its owners."""

    def final_reports(self) -> list[dict[str, Any]]:
        return self._reports

    def __enter__(self) -> DeployedApp:
        self.diag()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.stop()
