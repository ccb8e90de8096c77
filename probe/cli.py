"""Command line: parse, run, print, exit. The only module that calls sys.exit.

Exit codes: 0 the run completed, 2 usage or infrastructure error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from probe import __version__
from probe.errors import ProbeError

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gevent-probe",
                     description="Does your PostgreSQL driver cooperate with gevent?")
    parser.add_argument("--version", action="version", version=f"gevent-probe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    bench = sub.add_parser("bench", help="driver matrix without HTTP: seconds, one process each")
    _common(bench)
    bench.add_argument("--concurrency", "-c", type=int, help="connections, one greenlet each "
                       "(default 16)")
    bench.add_argument("--queries", type=int, help="SELECT 1 per connection (default 300)")
    bench.add_argument("--duration", type=float, help="seconds of SELECT 1 load instead of "
                       "--queries")
    _probe_flags(bench)

    run = sub.add_parser("run", help="system mode: gunicorn gevent workers under locust load")
    _common(run)
    run.add_argument("--users", "-u", type=int, help="locust users (default 50)")
    run.add_argument("--spawn-rate", "-r", type=float, help="users started per second "
                     "(default 50)")
    run.add_argument("--duration", "-t", type=float, help="seconds of load per variant "
                     "(default 10, at most 3600)")
    run.add_argument("--scenario", choices=("mixed", "select1"),
                     help="mixed (default): SELECT 1 plus a trickle of slow queries, which "
                     "exposes hub blocking; select1: the pure load, which hides it")
    run.add_argument("--slow-share", type=float, help="share of mixed users on the slow route "
                     "(default 0.1)")
    run.add_argument("--slow-ms", type=int, help="server-side sleep of the slow route "
                     "(default 50)")
    run.add_argument("--locustfile", help="your own locustfile instead of a scenario")
    run.add_argument("--locust-processes", type=int, help="locust processes (master + N "
                     "workers, locust's own distributed mode) to use several cores")
    run.add_argument("--locust-master-bind", help="HOST:PORT the locust master binds, for "
                     "workers started on other machines (default 127.0.0.1)")
    run.add_argument("--workers", "-w", type=int, help="gunicorn workers (default 1)")
    run.add_argument("--worker-connections", type=int, help="gunicorn worker_connections "
                     "(default 1000)")
    run.add_argument("--pool", choices=("probe", "native"), help="probe (default): the same "
                     "per-worker pool for every driver; native: psycopg_pool / psycopg2.pool")
    run.add_argument("--pool-size", type=int, help="connections per worker (default 10)")
    run.add_argument("--app", help="your WSGI app as module:callable instead of the sample app")
    run.add_argument("--chdir", help="directory to import --app from")
    run.add_argument("--probe-concurrency", type=int, help="concurrent /sleep requests of the "
                     "serialisation probe (default 16)")
    _probe_flags(run)

    variants = sub.add_parser("variants", help="list the variants and whether each can run here")
    variants.add_argument("--mode", choices=("bench", "run"), default="bench")
    return parser


def _probe_flags(parser: argparse.ArgumentParser) -> None:
    """The serialisation probe and stall watchdog, shared by bench and run."""
    parser.add_argument("--sleep-ms", type=float, help="server-side sleep of the "
                        "serialisation probe (default 50)")
    parser.add_argument("--rounds", type=int, help="serialisation probe rounds (default 3)")
    parser.add_argument("--block-threshold-ms", type=float, help="a hub stall longer than "
                        "this is a block event (default 10, minimum 2)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variants", help="comma-separated variant names (default: all)")
    parser.add_argument("--dsn", help="use this PostgreSQL server instead of an embedded one "
                        "(or set GEVENT_PROBE_DSN)")
    parser.add_argument("--config", type=Path, help="TOML file with a table per command")
    parser.add_argument("--output-dir", type=Path, help="where reports/<run-id>/ go "
                        "(default: reports)")
    parser.add_argument("--json", dest="json_path", type=Path,
                        help="write results.json here instead")


def main(argv: list[str] | None = None) -> NoReturn:
    args = _parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops what we started.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = _dispatch(args)
    except ProbeError as ex:
        print(f"gevent-probe: error: {ex}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print("gevent-probe: interrupted; everything it started was stopped", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "variants":
        return _variants(args)
    if args.command == "run":
        return _run(args)
    return _bench(args)


def _run(args: argparse.Namespace) -> int:
    from probe import config as config_mod
    from probe import format as fmt
    from probe import postgres, results
    from probe.load import locustfile_for
    from probe.system import from_run_config, run_system
    from probe.variants import select

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    settings = config_mod.build(config_mod.RunConfig,
                                config_mod.load_table(args.config, "run"), flags).validate()
    select(settings.variants, "run")  # unknown names fail before any server starts
    system = from_run_config(settings)
    locustfile_for(system.load)
    with postgres.database(settings.dsn) as (dsn, database), _progress() as progress:
        run = run_system(system, dsn, database, progress)
    path = results.write(run, settings.json_path or results.default_path(settings.output_dir, run))
    print(fmt.run_table(run, color=sys.stdout.isatty()), end="")
    print(f"results: {path}")
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from probe import config as config_mod
    from probe import format as fmt
    from probe import postgres, results
    from probe.bench import run_bench
    from probe.variants import select

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    settings = config_mod.build(config_mod.BenchConfig,
                                config_mod.load_table(args.config, "bench"), flags).validate()
    select(settings.variants, "bench")  # unknown names fail before any server starts
    with postgres.database(settings.dsn) as (dsn, database), _progress() as progress:
        run = run_bench(settings, dsn, database, progress)
    path = results.write(run, settings.json_path or results.default_path(settings.output_dir, run))
    print(fmt.bench_table(run, color=sys.stdout.isatty()), end="")
    print(f"results: {path}")
    return EXIT_OK


def _variants(args: argparse.Namespace) -> int:
    from probe import format as fmt
    from probe.availability import check_all

    print(fmt.variants_table(check_all(args.mode), color=sys.stdout.isatty()), end="")
    return EXIT_OK


class _progress:
    """A live line per variant on stderr; plain lines when stderr is not a terminal."""

    def __enter__(self) -> Any:
        self._live = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._live = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                  TimeElapsedColumn(), console=Console(stderr=True),
                                  transient=True)
            self._live.start()
            self._task = self._live.add_task("starting", total=None)
        return self._update

    def _update(self, index: int, total: int, name: str, state: str) -> None:
        text = f"[{index + 1}/{total}] {name}: {state}"
        if self._live is not None:
            self._live.update(self._task, description=text)
        else:
            print(text, file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
