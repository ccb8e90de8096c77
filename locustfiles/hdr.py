"""Every locust response time in an HdrHistogram per request name, at microsecond resolution.

Locust's own percentiles come from response times rounded to 1 ms below 100 ms (10 ms below
1 s, ...); these histograms keep 3 significant digits of the microseconds. In a distributed
run (`--processes N`, or `--master` / `--worker`) each worker ships its histograms with every
stats report and starts afresh, and the master adds them bucket by bucket, so the result is
exact. The master, or the only process of a local run, writes everything to
$GEVENT_PROBE_LOAD_OUT when locust quits.

Every second of the test also gets its own histogram (all requests together), so that the
report can draw RPS and p99 per second beside the hub's loop lag.

The tool passes this file to locust before the scenario (`-f hdr.py,mixed.py`), so a user's
own locustfile needs nothing from us. The scenario's settings (rate, routes, ...) come in one
option, --gevent-probe-load (JSON), which locust forwards to every worker with the test, so a
worker on another host (`gevent-probe load-worker`) runs what the master was told to. Each
worker also tells the master how many requests it sent and whether its report is the last
one, so that a worker lost mid-test is named, not silently missing from the counts.

Importing it registers the listeners once per process, even if it is imported again under
another name, and makes every process of this locust run, forked workers included, die with
its parent (nothing may outlive the tool, even `kill -9`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from probe import protocol, stats
from probe.lifecycle import die_with_parent
from probe.results import write_text

OUT_ENV = protocol.LOAD_OUT
REPORT_KEY = "gevent_probe_hdr"  # our entry in locust's worker -> master stats message
# In a request's context (the open model, rate.py): the time.perf_counter() the request was
# due; its latency then counts from there, not from when it was sent.
INTENDED_KEY = "gevent_probe_due"
LOAD_OPTION = protocol.LOAD_OPTION  # the scenario's settings as JSON: {env name: value}


class Recorder:
    """Histograms (µs), request and failure counts, per request name and per second."""

    def __init__(self) -> None:
        self.histograms: dict[str, HdrHistogram] = {}
        self.requests: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.seconds: dict[str, list[Any]] = {}  # Unix second -> [histogram, requests, failures]
        self.start_lag = stats.new_histogram()  # open model: µs each request started late
        self.failed_with: dict[str, dict[str, int]] = {}  # name -> status code (or error) -> n
        self.first_failure: dict[str, str] = {}  # name -> what the first failure said
        # --gevent-probe-load, as this process got it with the test (kept here because the
        # recorder is the one object every copy of this module shares: see _register)
        self.settings: dict[str, str] = {}

    def record(self, name: str, response_time_ms: float | None, failed: bool) -> None:
        self.requests[name] = self.requests.get(name, 0) + 1
        second = self._second(str(int(time.time())))
        second[1] += 1
        if failed:
            self.failures[name] = self.failures.get(name, 0) + 1
            second[2] += 1
        if response_time_ms is None:  # locust counts these without a time too
            return
        value = max(0, round(response_time_ms * 1000))
        self._histogram(name).record_value(value)
        second[0].record_value(value)

    def record_failure(self, name: str, status: str, text: str) -> None:
        codes = self.failed_with.setdefault(name, {})
        codes[status] = codes.get(status, 0) + 1
        self.first_failure.setdefault(name, text)

    def record_start(self, late_s: float) -> None:
        """Open model: a request was sent `late_s` after it was due."""
        self.start_lag.record_value(max(1, round(late_s * 1e6)))

    def export(self) -> dict[str, Any]:
        return {
            "histograms": {n: stats.encode(h) for n, h in self.histograms.items()},
            "requests": dict(self.requests),
            "failures": dict(self.failures),
            "seconds": {t: [stats.encode(h), r, f] for t, (h, r, f) in self.seconds.items()},
            "start_lag": stats.encode(self.start_lag),
            "failed_with": {n: dict(c) for n, c in self.failed_with.items()},
            "first_failure": dict(self.first_failure),
        }

    def absorb(self, exported: dict[str, Any]) -> None:
        """Add another process's export: exact, counts are added bucket by bucket."""
        for name, encoded in exported.get("histograms", {}).items():
            self._histogram(name).decode_and_add(encoded.encode("ascii"))
        for name, n in exported.get("requests", {}).items():
            self.requests[name] = self.requests.get(name, 0) + n
        for name, n in exported.get("failures", {}).items():
            self.failures[name] = self.failures.get(name, 0) + n
        for t, (encoded, requests, failures) in exported.get("seconds", {}).items():
            second = self._second(t)
            second[0].decode_and_add(encoded.encode("ascii"))
            second[1] += requests
            second[2] += failures
        if exported.get("start_lag"):
            self.start_lag.decode_and_add(exported["start_lag"].encode("ascii"))
        for name, codes in exported.get("failed_with", {}).items():
            mine = self.failed_with.setdefault(name, {})
            for status, n in codes.items():
                mine[status] = mine.get(status, 0) + n
        for name, text in exported.get("first_failure", {}).items():
            self.first_failure.setdefault(name, text)

    def reset(self) -> None:
        self.histograms.clear()
        self.requests.clear()
        self.failures.clear()
        self.seconds.clear()
        self.start_lag = stats.new_histogram()
        self.failed_with.clear()
        self.first_failure.clear()

    def timeline(self) -> list[dict[str, Any]]:
        """Per second: Unix time, requests, failures, p99 in ms."""
        return [{"t": int(t), "requests": r, "failures": f,
                 "p99_ms": stats.latency_summary(h).p99}
                for t, (h, r, f) in sorted(self.seconds.items(), key=lambda kv: int(kv[0]))]

    def _histogram(self, name: str) -> HdrHistogram:
        hist = self.histograms.get(name)
        if hist is None:
            hist = self.histograms[name] = stats.new_histogram()
        return hist

    def _second(self, t: str) -> list[Any]:
        second = self.seconds.get(t)
        if second is None:
            second = self.seconds[t] = [stats.new_histogram(), 0, 0]
        return second


def _locust_stats(environment: Environment) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (name, method), entry in environment.stats.entries.items():
        key = name if method == "GET" else f"{method} {name}"
        out[key] = {
            "method": method,
            "num_requests": entry.num_requests,
            "num_failures": entry.num_failures,
            "avg_response_time": entry.avg_response_time,
            "max_response_time": entry.max_response_time,
            "p50": entry.get_response_time_percentile(0.5),
            "p90": entry.get_response_time_percentile(0.9),
            "p99": entry.get_response_time_percentile(0.99),
            "p999": entry.get_response_time_percentile(0.999),
        }
    return out


def load_report(recorder: Recorder, environment: Environment) -> dict[str, Any]:
    """The $GEVENT_PROBE_LOAD_OUT document: our histograms (µs), locust's own view (ms)."""
    runner = environment.runner
    exported = recorder.export()
    exported.pop("seconds")
    return {
        **exported,
        "timeline": recorder.timeline(),
        "locust_stats": _locust_stats(environment),
        "mode": "master" if isinstance(runner, MasterRunner) else "local",
        "workers_reported": sorted(_reporters),
        "workers_joined": sorted(_joined),
        "load_workers": {k: dict(v) for k, v in _load_workers.items()},
        "workers_missing": sorted(_missing(runner)),
        "sent": _sent[0],
        # CPU seconds of each process that generated load, counted from the start of the test:
        # locust's own start-up (imports) is not the load generator being busy.
        "load_cpu_s": dict(_worker_cpu) if _worker_cpu else {"local": _cpu_since_start()},
        "started": _started[0] if _started else None,
    }


def write_report(path: str, recorder: Recorder, environment: Environment) -> None:
    write_text(Path(path), json.dumps(load_report(recorder, environment), indent=1))


_reporters: set[str] = set()
_load_workers: dict[str, dict[str, Any]] = {}  # master: each worker's requests and last word
_joined: set[str] = set()  # master: workers that connected
_sent = [0]  # requests this process recorded since the test began (never shipped away)


def setting(name: str, default: str) -> str:
    """A scenario setting (a protocol.* name): the master's --gevent-probe-load as this
    process got it with the test, else the environment (read when the test runs, not at
    import: a remote worker learns them only then)."""
    return RECORDER.settings.get(name) or os.environ.get(name) or default
_worker_cpu: dict[str, float] = {}  # master: each worker's CPU since the test started
_cpu_at_start: list[float] = []
_started: list[float] = []  # Unix time of test_start: the load window's beginning


def _cpu_since_start() -> float:
    return time.process_time() - (_cpu_at_start[0] if _cpu_at_start else 0.0)


def _on_request(name: str, response_time: float | None, exception: BaseException | None = None,
                context: dict[str, Any] | None = None, response: Any = None,
                **_kw: Any) -> None:
    due = (context or {}).get(INTENDED_KEY)
    if due is not None and response_time is not None:  # open model: from when it was due
        response_time = (time.perf_counter() - due) * 1000
    RECORDER.record(name, response_time, failed=exception is not None)
    _sent[0] += 1
    if exception is not None:
        RECORDER.record_failure(name, *failure_of(exception, response))


MAX_FAILURE_TEXT = 300


def failure_of(exception: BaseException, response: Any) -> tuple[str, str]:
    """(status code or error type, what it said): the response's first line of text, or the
    error itself when no response came (refused, reset, timed out)."""
    status = getattr(response, "status_code", None)
    if status:
        try:
            body = " ".join(str(response.text or "").split())[:MAX_FAILURE_TEXT]
        except Exception:  # a body that cannot be decoded says nothing more
            body = ""
        return str(status), f"HTTP {status}" + (f": {body}" if body else "")
    text = f"{type(exception).__name__}: {exception}".strip().splitlines()[0]
    return type(exception).__name__, text[:MAX_FAILURE_TEXT]


def _on_report_to_master(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    # Fired in a worker just before each stats message: ship what was recorded, start afresh,
    # exactly as locust does with its own stats.
    env = _environment.get("env")
    state = getattr(env.runner, "state", "") if env is not None else ""
    data[REPORT_KEY] = {**RECORDER.export(), "cpu_s": _cpu_since_start(), "sent": _sent[0],
                        # after stop(): locust sends one report more, then the worker ends
                        "final": state in ("stopping", "stopped")}
    RECORDER.reset()


def _on_worker_report(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    exported = data.get(REPORT_KEY)
    if exported:
        _reporters.add(client_id)
        RECORDER.absorb(exported)
        _worker_cpu[client_id] = exported.get("cpu_s", 0.0)
        seen = _load_workers.setdefault(client_id, {"received": 0})
        seen["received"] += sum(exported.get("requests", {}).values())
        seen.update(sent=exported.get("sent", 0), final=bool(exported.get("final")),
                    at=round(time.time(), 3))


def _on_worker_connect(client_id: str, **_kw: Any) -> None:
    _joined.add(client_id)
    path = os.environ.get(OUT_ENV)
    if path:  # read by the tool if the test never starts: how many came
        write_text(Path(path + protocol.JOINED), json.dumps(sorted(_joined)))


def _missing(runner: Any) -> list[str]:
    """Workers the master stopped hearing from (no heartbeat for a few seconds)."""
    clients = getattr(runner, "clients", None)
    return [c.id for c in getattr(clients, "missing", [])] if clients is not None else []


def _on_command_line(parser: Any, **_kw: Any) -> None:
    parser.add_argument(LOAD_OPTION, default="", help="gevent-probe's scenario settings (JSON)")


def _on_test_start(environment: Environment, **_kw: Any) -> None:
    RECORDER.reset()  # locust clears its stats for a new test too
    _sent[0] = 0
    raw = getattr(environment.parsed_options, LOAD_OPTION[2:].replace("-", "_"), "")
    if raw:  # a remote worker has it now: the master's option came with the spawn message
        RECORDER.settings.update(json.loads(raw))
    _cpu_at_start[:] = [time.process_time()]
    _started[:] = [time.time()]


def _on_spawning_complete(user_count: int, **_kw: Any) -> None:
    env = _environment.get("env")
    if env is not None and env.reset_stats:  # --reset-stats: mirror locust's reset
        RECORDER.reset()


def _on_reset_stats(**_kw: Any) -> None:
    RECORDER.reset()


def _on_init(environment: Environment, **_kw: Any) -> None:
    _environment["env"] = environment


def _on_quitting(environment: Environment, **_kw: Any) -> None:
    # Runs after the master's own quitting listener (locust fires quitting in reverse order of
    # registration, and ours was registered first), i.e. after the workers' final reports
    # that came within locust's half second for them: a worker whose last report is not
    # among them is named in load_workers (final: false).
    if isinstance(environment.runner, WorkerRunner):
        mine = os.environ.get(protocol.WORKER_OUT)  # gevent-probe load-worker's
        if mine:
            write_text(Path(mine), json.dumps({"mode": "worker", "sent": _sent[0]}))
        return
    path = os.environ.get(OUT_ENV)
    if path:
        write_report(path, RECORDER, environment)


_environment: dict[str, Environment] = {}


def _register() -> Recorder:
    existing = getattr(events, "_gevent_probe_recorder", None)
    if existing is not None:
        return existing
    recorder = Recorder()
    os.register_at_fork(after_in_child=die_with_parent)  # locust --processes forks workers
    events.init.add_listener(_on_init)
    events.init_command_line_parser.add_listener(_on_command_line)
    events.worker_connect.add_listener(_on_worker_connect)
    events.request.add_listener(_on_request)
    events.report_to_master.add_listener(_on_report_to_master)
    events.worker_report.add_listener(_on_worker_report)
    events.test_start.add_listener(_on_test_start)
    events.spawning_complete.add_listener(_on_spawning_complete)
    events.reset_stats.add_listener(_on_reset_stats)
    events.quitting.add_listener(_on_quitting)
    events._gevent_probe_recorder = recorder  # type: ignore[attr-defined]
    return recorder


RECORDER = _register()
