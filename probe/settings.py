"""One settings model for every command: flags > config file > defaults, validated once.

Each field of `Settings` carries its flag, help and the commands that take it; the CLI builds
its parsers from these fields, the config file is read against them, and `validate` checks
them in one place. A config file is TOML: `--config FILE`, or else the `[tool.gevent-probe]`
table of ./pyproject.toml. Top-level keys apply to every command, a table per command
(`[bench]`, `[run]`, `[gate]`, `[matrix]`) to that command; `gate` reads the table of its
`--mode` first, then `[gate]`:

    [tool.gevent-probe]
    variants = "psycopg2-green,psycopg-binary"

    [tool.gevent-probe.gate]
    max-p99 = 25.0
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from probe import config_file, protocol, thresholds
from probe.errors import ProbeError
from probe.measurement import Connections
from probe.model import VERDICTS, Mode

DSN_ENV = protocol.DSN
MEASURING = ("bench", "run", "gate", "selftest", "matrix")
BENCH_LIKE = ("bench", "gate", "selftest", "matrix")
RUN_LIKE = ("run", "gate")
SCENARIOS = ("mixed", "select1")
FAIL_ON_DEFAULT = "hub-blocking,busy-wait,contention,regressed,inconclusive"
MAX_DURATION_S = 3600.0
EMBEDDED_CONNECTIONS = 280  # of the embedded server's 300, a margin for its own and ours


def _opt(default: Any, help: str, commands: tuple[str, ...], *, short: str | None = None,
         choices: tuple[str, ...] | None = None, low: float | None = None,
         high: float | None = None, metavar: str | None = None) -> Any:
    """A setting: its default, and the flag the CLI makes of it."""
    return field(default=default, metadata={
        "help": help, "commands": commands, "short": short, "choices": choices,
        "low": low, "high": high, "metavar": metavar})


@dataclass(frozen=True)
class Settings:
    command: str = "bench"
    # -- what to measure, and against which server -----------------------------------------
    variants: str | None = _opt(None, "comma-separated variant names (default: all)", MEASURING)
    dsn: str | None = _opt(None, f"your PostgreSQL server instead of the embedded one (or set "
                           f"{DSN_ENV}); its password is never printed nor stored", MEASURING,
                           metavar="URL")
    connections: str = _opt("per-greenlet", "per-greenlet (default): every greenlet its own "
                            "connection; shared: all greenlets of a process (all requests of "
                            "a gunicorn worker) share one, the psycopg #919 shape", MEASURING,
                            choices=("per-greenlet", "shared"))
    # -- the in-process probe, the same in bench and run -----------------------------------
    concurrency: int = _opt(16, "probe connections sleeping at once, and greenlets of the bench "
                            "load (default 16)", MEASURING, short="-c", low=2, high=200)
    sleep_ms: float = _opt(50.0, "server-side sleep of the probe (default 50)", MEASURING,
                           low=1, high=10_000)
    rounds: int = _opt(3, "probe rounds at most (more with a --concurrency under 8: it "
                       "needs 8 queries); it stops after the first decisive one (default 3)",
                       MEASURING, low=1, high=20)
    block_threshold_ms: float = _opt(10.0, "a hub stall longer than this is counted "
                                     "(default 10, at least 2)", MEASURING, low=2, high=10_000)
    partial_block_ms: float = _opt(2.0, "how long the partial-block control blocks the hub per "
                                   "query (default 2; 0: not at all, a control that fails)",
                                   MEASURING, low=0, high=1000)
    compute_ms: float = _opt(15.0, "how long the compute control computes per request without "
                             "yielding (default 15)", MEASURING, low=1, high=1000)
    workload: str = _opt("select1", "what each unit of the load runs: select1 (default); "
                         "rowlock, a transaction every greenlet wants on one row (a blocking "
                         "driver deadlocks); copy (COPY FROM STDIN); notify (LISTEN beside "
                         "queries); connect (a connection per unit); mixed (execute, "
                         "executemany, COPY, pipeline: with --connections shared)", MEASURING,
                         choices=("select1", "rowlock", "copy", "notify", "connect", "mixed"))
    deadlock_after: float = _opt(5.0, "nothing completed for this many seconds while work was "
                                 "pending is a deadlock: the stacks and the server's locks are "
                                 "taken, the process ended (default 5)", MEASURING, low=1,
                                 high=600, metavar="SECONDS")
    repeat: int | None = _opt(None, "measure every variant K times, interleaved (default 1; 3 "
                              "for gate)", MEASURING, low=1, high=50, metavar="K")
    # -- the load ------------------------------------------------------------------------------
    queries: int = _opt(300, "bench: SELECT 1 per greenlet (default 300; such a load stops "
                        "after 3 s in any case: use --duration for longer)", BENCH_LIKE,
                        low=1, high=1_000_000)
    duration: float | None = _opt(None, "seconds of load per variant (run: default 10; bench: "
                                  "instead of --queries); at most 3600", MEASURING, short="-t",
                                  low=0.1, high=MAX_DURATION_S)
    users: int = _opt(50, "run: locust users (default 50); with --rate, the requests in flight "
                      "at most", RUN_LIKE, short="-u", low=1, high=10_000)
    rate: float | None = _opt(None, "run: a fixed arrival rate, requests/s (an open model, as "
                              "wrk2 or k6's constant-arrival-rate): requests start on schedule "
                              "whatever the responses do, and latency counts from when each was "
                              "due; for latency below capacity, where --users measures a queue",
                              RUN_LIKE, low=1, high=100_000, metavar="RPS")
    spawn_rate: float = _opt(50.0, "run: users started per second (default 50)", RUN_LIKE,
                             short="-r", low=0.1, high=10_000)
    scenario: str = _opt("mixed", "run: mixed (default), SELECT 1 plus a trickle of slow "
                         "queries, which exposes hub blocking; select1, which hides it",
                         RUN_LIKE, choices=SCENARIOS)
    slow_share: float = _opt(0.1, "run: share of mixed users on the slow route (default 0.1)",
                             RUN_LIKE, low=0, high=0.99)
    slow_ms: int = _opt(50, "run: server-side sleep of the slow route (default 50)", RUN_LIKE,
                        low=1, high=10_000)
    locustfile: Path | None = _opt(None, "run: your own locustfile instead of a scenario",
                                   RUN_LIKE, metavar="FILE")
    locust_processes: int = _opt(1, "run: locust processes (locust's own master/worker mode) "
                                 "to use several cores (default 1)", RUN_LIKE, low=1, high=64)
    locust_master_bind: str | None = _opt(None, "run: HOST:PORT the locust master binds, for "
                                          "workers on other machines", RUN_LIKE)
    expect_workers: int = _opt(0, "run: load from N `gevent-probe load-worker` processes on "
                               "other hosts (locust's master/worker mode): the load starts once "
                               "N have joined the master at --locust-master-bind", RUN_LIKE,
                               low=0, high=1000, metavar="N")
    expect_workers_max_wait: float = _opt(60.0, "run: seconds to wait for --expect-workers "
                                          "before giving up (default 60)", RUN_LIKE, low=1,
                                          high=3600, metavar="SECONDS")
    target: str | None = _opt(None, "run: an app that is already running (http://HOST:PORT), "
                              "instead of starting one: it loads the agent itself (README: "
                              "'A deployed app') and shares the secret in "
                              f"{protocol.AGENT_TOKEN}; the probe and the load go to it",
                              RUN_LIKE, metavar="URL")
    workers: int = _opt(1, "run: gunicorn workers (default 1)", RUN_LIKE, short="-w", low=1,
                        high=64)
    worker_connections: int = _opt(1000, "run: gunicorn worker_connections (default 1000)",
                                   RUN_LIKE, low=1, high=100_000)
    pool: str = _opt("probe", "run: probe (default), the same pool for every driver; native: "
                     "psycopg_pool / psycopg2.pool", RUN_LIKE, choices=("probe", "native"))
    pool_size: int = _opt(10, "run: connections per gunicorn worker (default 10)", RUN_LIKE,
                          low=1, high=1000)
    warm_up: float | None = _opt(None, "run: seconds of unmeasured load first, so that the "
                                 "app's pool, caches and first connections are in place "
                                 "(default: 2 with --app; 0 for the sample app, which opens "
                                 "its connections itself)", RUN_LIKE, low=0, high=600,
                                 metavar="SECONDS")
    app: str | None = _opt(None, "run: your WSGI app as module:callable instead of the sample "
                           "app. It gets the probe's database in GEVENT_PROBE_DSN and, unless "
                           "already set, DATABASE_URL (a postgresql:// URI); the built-in "
                           "scenarios call GET /select1 and GET /sleep?ms=N (--locustfile for "
                           "your routes); by default the variants of the drivers it imports "
                           "run, with the controls", RUN_LIKE, metavar="MODULE:CALLABLE")
    chdir: Path | None = _opt(None, "run: directory to import --app from (default: here)",
                              RUN_LIKE, metavar="DIR")
    # -- outputs -------------------------------------------------------------------------------
    output_dir: Path = _opt(Path("reports"), "where reports/<run-id>/ go (default: reports)",
                            (*MEASURING, "report"), metavar="DIR")
    json_path: Path | None = _opt(None, "write results.json here instead", MEASURING,
                                  metavar="FILE")
    # -- gate ----------------------------------------------------------------------------------
    mode: str = _opt("bench", "gate: what to run, bench (default) or run", ("gate",),
                     choices=("bench", "run"))
    results: Path | None = _opt(None, "gate: judge this results.json instead of measuring",
                                ("gate",), metavar="FILE")
    max_p99: str | None = _opt(None, "gate: fail when p99 exceeds MS: SELECT 1 in bench; in "
                               "run every route, or ROUTE=MS,... per route", ("gate",),
                               metavar="MS")
    max_avg: str | None = _opt(None, "gate: fail when the average exceeds MS (as --max-p99)",
                               ("gate",), metavar="MS")
    max_p99_ratio: float | None = _opt(None, "gate: fail when p99 is X times the baseline's "
                                       "(default 1.2 with --baseline)", ("gate",), low=1,
                                       metavar="X")
    baseline_variant: str = _opt("psycopg2-green", "gate: the variant ratios compare to "
                                 "(default psycopg2-green)", ("gate",))
    baseline: Path | None = _opt(None, "gate: compare with a saved baseline file instead",
                                 ("gate",), metavar="FILE")
    save_baseline: Path | None = _opt(None, "gate: save this run as a baseline file",
                                      ("gate",), metavar="FILE")
    baseline_runs: int = _opt(5, "gate: with --save-baseline onto a baseline of the same "
                              "mode, keep the repeats of this many runs, this one and the "
                              "latest before it, so that comparisons see the noise between "
                              "runs (default 5; 1 replaces the file)", ("gate",), low=1,
                              high=100, metavar="N")
    on_undecided: str = _opt("pass", "gate: a p99 ratio the noise between runs leaves "
                             "undecided passes (default: unchanged code must pass on a noisy "
                             "runner) or fails", ("gate",), choices=("pass", "fail"))
    fail_on: str = _opt(FAIL_ON_DEFAULT, "gate: verdicts that fail (default: "
                        f"{FAIL_ON_DEFAULT})", ("gate",))
    junit: Path | None = _opt(None, "gate: write a JUnit XML report here", ("gate",),
                              metavar="FILE")
    # -- matrix --------------------------------------------------------------------------------
    package: str = _opt("psycopg", "matrix: psycopg, psycopg2-binary or gevent", ("matrix",),
                        choices=("psycopg", "psycopg2-binary", "gevent"))
    versions: str | None = _opt(None, "matrix: a comma list, or LOW..HIGH for every release "
                                "in between", ("matrix",), metavar="SPEC")
    bisect: bool = _opt(False, "matrix: find where verdicts change with fewer installs",
                        ("matrix",))

    # -- derived ---------------------------------------------------------------------------

    @property
    def connection_mode(self) -> Connections:
        """--connections, as the results type it (the choices are checked when parsed)."""
        return "shared" if self.connections == "shared" else "per-greenlet"

    @property
    def measuring_mode(self) -> Mode:
        """bench or run: what this command measures."""
        measured = self.mode if self.command == "gate" else self.command
        return "run" if measured == "run" else "bench"

    @property
    def load_s(self) -> float | None:
        if self.measuring_mode == "run":
            return self.duration or 10.0
        return self.duration

    @property
    def load_processes(self) -> int:
        """locust processes that generate load: the remote workers, or this host's."""
        return self.expect_workers or self.locust_processes

    @property
    def warm_up_s(self) -> float:
        if self.warm_up is not None:
            return self.warm_up
        return 2.0 if self.app else 0.0

    @property
    def probe_budget_s(self) -> float:
        """The longest an honest probe can take: every round's sleeps serialised, each with a
        partial block (the partial-block control)."""
        rounds = thresholds.probe_rounds(self.rounds, self.concurrency)
        return rounds * self.concurrency * (self.sleep_ms + self.partial_block_ms) / 1000

    @property
    def connections_needed(self) -> int:
        """Connections open at once: the probe's, the load's, and in run every worker's pool."""
        if self.measuring_mode == "bench":
            return self.concurrency + 1
        return self.workers * (self.concurrency + self.pool_size + 1)

    @property
    def variant_names(self) -> tuple[str, ...]:
        """--variants as named (empty: every variant of the mode)."""
        return () if (self.variants or "").strip() == "all" else comma_list(self.variants)

    @property
    def fail_on_verdicts(self) -> frozenset[str]:
        return frozenset(comma_list(self.fail_on))

    @property
    def repeats(self) -> int:
        return self.repeat or (3 if self.command == "gate" else 1)

    def validate(self) -> Settings:
        for f in dataclasses.fields(self):
            if f.metadata and self.command in f.metadata["commands"]:
                _check_field(f, getattr(self, f.name))
        if self.app is not None and (":" not in self.app or self.app.startswith(":")
                                     or self.app.endswith(":")):
            raise ProbeError(f"--app must look like module:callable, got {self.app!r}")
        if self.locustfile is not None and not self.locustfile.is_file():
            raise ProbeError(f"--locustfile {self.locustfile} not found")
        if self.rate is not None and self.locustfile is not None:
            raise ProbeError("--rate drives the built-in scenarios (--scenario); with your own "
                             "--locustfile, pace it there (locust's constant_throughput)")
        self._validate_remote()
        if self.chdir is not None and not self.chdir.is_dir():
            raise ProbeError(f"--chdir {self.chdir} is not a directory")
        if self.command == "gate" and self.results is not None and not self.results.is_file():
            raise ProbeError(f"--results {self.results} not found")
        if self.command == "gate" and self.baseline is not None and not self.baseline.is_file():
            raise ProbeError(f"--baseline {self.baseline} not found")
        if self.command == "gate":
            self._validate_gate()
            unknown = self.fail_on_verdicts - set(VERDICTS)
            if unknown:
                raise ProbeError(f"--fail-on: unknown verdict(s) {', '.join(sorted(unknown))}; "
                                 f"known: {', '.join(VERDICTS)}")
        needed = self.connections_needed
        measures = self.command in MEASURING and not (self.command == "gate" and self.results)
        if self.dsn is None and measures and not self.target and needed > EMBEDDED_CONNECTIONS:
            raise ProbeError(f"these settings open up to {needed} connections at once, more "
                             f"than the embedded server's {EMBEDDED_CONNECTIONS}: lower "
                             "--workers, --concurrency or --pool-size, or use --dsn")
        if self.command == "matrix" and not self.versions:
            raise ProbeError("matrix needs --versions, e.g. 3.1.12,3.1.14 or 3.1.12..3.1.14")
        return self

    def _validate_remote(self) -> None:
        """--target and --expect-workers: what cannot work, said before anything starts."""
        if self.expect_workers and not self.locust_master_bind:
            raise ProbeError("--expect-workers needs --locust-master-bind HOST:PORT, an address "
                             "of this host that the load workers can reach")
        host, _, port = (self.locust_master_bind or "").rpartition(":")
        if self.locust_master_bind is not None and host and not port.isdigit():
            raise ProbeError("--locust-master-bind must be HOST or HOST:PORT, got "
                             f"{self.locust_master_bind!r}")
        if self.expect_workers and self.locust_processes > 1:
            raise ProbeError("--expect-workers and --locust-processes both set the load "
                             "generators: give one")
        if self.target is None:
            return
        url = urlsplit(self.target)
        if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
            raise ProbeError(f"--target must look like http://HOST:PORT, got {self.target!r}")
        if url.username or url.password:
            raise ProbeError("--target takes no credentials in the URL (they would be stored "
                             f"with the results); the agent's token goes in {protocol.AGENT_TOKEN}")
        for given, flag in ((self.app, "--app"), (self.variants, "--variants")):
            if given is not None:
                raise ProbeError(f"--target measures the app as deployed, with the driver it "
                                 f"runs: {flag} does not apply")
        if not os.environ.get(protocol.AGENT_TOKEN):
            raise ProbeError(f"--target needs the app's agent token in {protocol.AGENT_TOKEN} "
                             "(the same secret the app was started with)")

    def _validate_gate(self) -> None:
        """What can be known wrong before minutes of measuring."""
        for value, flag in ((self.max_p99, "--max-p99"), (self.max_avg, "--max-avg")):
            routes = [r for r in parse_limits(value, flag) if r is not None]
            if routes and self.measuring_mode == "bench" and not self.results:
                raise ProbeError(f"{flag}: bench has no routes ({', '.join(routes)}): give MS")
        named = self.variant_names
        if (self.max_p99_ratio is not None and self.baseline is None and named
                and not self.results and self.baseline_variant not in named):
            raise ProbeError(f"--max-p99-ratio compares with {self.baseline_variant}: add it "
                             "to --variants, or give --baseline-variant or --baseline")

    def public(self) -> dict[str, Any]:
        """The settings as results.json records them: no password, paths as text."""
        from probe import dsn as dsn_mod

        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not f.metadata or self.command in f.metadata["commands"]}
        data["dsn"] = dsn_mod.redact(self.dsn) if self.dsn else None
        data["repeat"] = self.repeats
        data["duration"] = self.load_s
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}

    def command_line(self) -> str:
        """The command that reproduces this run; a DSN appears with its password redacted."""
        from probe import dsn as dsn_mod

        words = ["gevent-probe", self.command]
        for f in dataclasses.fields(self):
            if not f.metadata or self.command not in f.metadata["commands"]:
                continue
            value = getattr(self, f.name)
            if value == f.default or (f.name == "dsn" and value is None):
                continue
            flag = flag_name(f)
            if isinstance(value, bool):
                words.append(flag)
                continue
            shown = dsn_mod.redact(value) if f.name == "dsn" else value
            words += [flag, str(shown)]
        return shlex.join(words)


def comma_list(text: str | None) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c'): how every list flag is written."""
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())


def parse_limits(text: str | None, flag: str) -> dict[str | None, float]:
    """'25' (every route) or 'select1=25,sleep=120' -> {None: 25.0} / {'select1': 25.0, ...}."""
    if text is None:
        return {}
    limits: dict[str | None, float] = {}
    for part in str(text).split(","):
        route, _, number = part.strip().rpartition("=")
        try:
            value = float(number)
        except ValueError:
            raise ProbeError(f"{flag} must be MS or ROUTE=MS,...; got {text!r}") from None
        if not (math.isfinite(value) and value >= 0):
            raise ProbeError(f"{flag} must be a number of ms, 0 or more; got {text!r}")
        limits[route.strip() or None] = value
    return limits


def flag_name(f: dataclasses.Field[Any]) -> str:
    return "--" + f.name.replace("_", "-").replace("json-path", "json")


def _check_field(f: dataclasses.Field[Any], value: Any, name: str | None = None) -> None:
    """`name`: how the user wrote it (a flag, or a key in a config file)."""
    if value is None:
        return
    name = name or flag_name(f)
    kind = kind_of(f)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ProbeError(f"{name} must be a whole number, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)
                          or not math.isfinite(value)):
        raise ProbeError(f"{name} must be a number, got {value!r}")
    if kind in (str, Path) and not isinstance(value, str | Path):
        raise ProbeError(f"{name} must be text, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise ProbeError(f"{name} must be true or false, got {value!r}")
    meta = f.metadata
    if meta["choices"] and value not in meta["choices"]:
        raise ProbeError(f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if meta["low"] is not None and value < meta["low"]:
        raise ProbeError(f"{name} must be at least {meta['low']:g}, got {value!r}")
    if meta["high"] is not None and value > meta["high"]:
        raise ProbeError(f"{name} is capped at {meta['high']:g} (runs must stay bounded), "
                         f"got {value!r}")


def kind_of(f: dataclasses.Field[Any]) -> type:
    """int, float, str, Path or bool: the field's type without Optional."""
    hint = typing.get_type_hints(Settings)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind: type = args[0]
    return kind


def fields_for(command: str) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(Settings)
            if f.metadata and command in f.metadata["commands"]]


def build(command: str, flags: dict[str, Any], config: Path | None = None) -> Settings:
    """Settings for `command`: defaults <- config file <- flags (None means "not given")."""
    given = {k: v for k, v in flags.items() if v is not None}
    known = {f.name for f in dataclasses.fields(Settings) if f.metadata}
    file_values, origins = config_file.load_config(config, command, known, given.get("mode"))
    merged: dict[str, Any] = {**file_values, **given}
    if merged.get("dsn") is None and os.environ.get(DSN_ENV):
        merged["dsn"] = os.environ[DSN_ENV]
    by_name = {f.name: f for f in dataclasses.fields(Settings)}
    for name, value in list(merged.items()):
        f = by_name[name]
        where = origins[name] if name in origins and name not in given else None
        if where is not None:
            value = merged[name] = config_file.from_toml(name, value, where)
        _check_field(f, value, where)  # a config file's wrong type fails here, in one line
        if kind_of(f) is Path and isinstance(value, str):
            merged[name] = Path(value)
        if kind_of(f) is float and isinstance(value, int):
            merged[name] = float(value)
    return Settings(command=command, **merged).validate()
