"""Command line: parse, run, print, exit. The only module that calls sys.exit.

Exit codes: 0 the run completed (gate: every check passed); 1 gate: a check failed;
2 usage or infrastructure error, or a control not flagged as expected (the detectors cannot
be trusted here); 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from probe import __version__
from probe.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Interrupted, ProbeError

if TYPE_CHECKING:  # imported where used: `gevent-probe --help` stays fast
    from probe.gate import GateOutcome
    from probe.model import MatrixResult, RunResult
    from probe.settings import Settings
    from probe.variant_loop import Progress

COMMANDS = {
    "bench": "driver matrix without HTTP: seconds, a fresh process per variant",
    "run": "gunicorn gevent workers under locust load, every variant",
    "gate": "CI gate: measure (or read --results), check, exit 0 pass / 1 fail / 2 untrusted",
    "selftest": "prove the detectors on this machine: the controls and a healthy driver",
    "matrix": "bench every release of a package in a cached environment each: the transitions",
}
SELFTEST_VARIANTS = "psycopg-binary,wait_c,import-before-patch,partial-block,spin-wait"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    from probe.settings import fields_for

    top = _Parser(prog="gevent-probe",
                  description="Does your PostgreSQL driver cooperate with gevent?")
    top.add_argument("--version", action="version", version=f"gevent-probe {__version__}")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command, text in COMMANDS.items():
        cmd = sub.add_parser(command, help=text, description=text)
        cmd.add_argument("--config", type=Path, help="TOML file with the settings (default: "
                         "[tool.gevent-probe] of ./pyproject.toml)")
        for f in fields_for(command):
            _add_flag(cmd, f)
    report = sub.add_parser("report", help="render report.md and report.html again from one or "
                            "more results files (several: side by side)")
    report.add_argument("files", nargs="+", type=Path, metavar="RESULTS",
                        help="results.json files")
    report.add_argument("--output-dir", type=Path, help="where the reports go (default: beside "
                        "a single results file; reports/compare-<id>/ for several)")
    about = ("send a share of a run's load from this host: a locust worker of the locust "
             "master that `run --expect-workers N --locust-master-bind HOST:PORT` starts")
    worker = sub.add_parser("load-worker", help=about, description=about)
    worker.add_argument("--master", required=True, metavar="HOST:PORT",
                        help="the run's --locust-master-bind, as this host reaches it")
    worker.add_argument("--runs", type=int, metavar="N", help="stop after N load phases "
                        "(default: until stopped; a run has one per variant, and a warm-up)")
    worker.add_argument("--processes", type=int, default=1, metavar="N",
                        help="locust worker processes on this host, for several cores")
    variants = sub.add_parser("variants", help="list the variants and whether each can run here")
    variants.add_argument("--mode", choices=("bench", "run"), default="bench")
    return top


def _add_flag(cmd: argparse.ArgumentParser, f: dataclasses.Field[Any]) -> None:
    from probe.settings import flag_name, kind_of

    meta = f.metadata
    names = [flag_name(f)]
    if meta["short"]:
        names.append(meta["short"])
    kind = kind_of(f)
    if kind is bool:
        cmd.add_argument(*names, dest=f.name, action="store_true", default=None,
                         help=meta["help"])
        return
    cmd.add_argument(*names, dest=f.name, type=kind, default=None, choices=meta["choices"],
                     metavar=meta["metavar"], help=meta["help"])


def main(argv: list[str] | None = None) -> NoReturn:
    args = parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops what we started; and Ctrl-C
    # stops us even where it was ignored on the way in (a shell's background job).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = _dispatch(args)
    except ProbeError as ex:
        print(f"gevent-probe: error: {ex}", file=sys.stderr)
        code = EXIT_USAGE
    except Interrupted as ex:  # what was kept, and where (probe.recording)
        print(f"gevent-probe: {ex}", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("gevent-probe: interrupted before anything was measured; everything it started "
              "was stopped", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "variants":
        return _variants(args)
    if args.command == "report":
        return _report(args)
    if args.command == "load-worker":
        from probe.load_worker import serve

        if (args.runs is not None and args.runs < 1) or not 1 <= args.processes <= 64:
            raise ProbeError("--runs must be at least 1, --processes 1 to 64")
        try:
            serve(args.master, args.runs, args.processes)
        except KeyboardInterrupt:
            print("gevent-probe: load worker stopped", file=sys.stderr)
            return EXIT_INTERRUPTED
        return EXIT_OK
    if args.command == "gate":
        return _gate(args)
    if args.command == "selftest":
        return _selftest(args)
    if args.command == "matrix":
        return _matrix(args)
    return _measure(args)


def _settings(args: argparse.Namespace) -> Settings:
    from probe.settings import build

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    return build(args.command, flags, args.config)


def _measure(args: argparse.Namespace) -> int:
    from probe.report import terminal
    from probe.variants import select

    settings = _settings(args)
    select(settings.variants, settings.measuring_mode)  # unknown names fail before any server
    result, path = _record(settings)
    print(terminal.results_table(result, color=sys.stdout.isatty(), width=_width()), end="")
    print(f"results: {path}\nreport:  {path.parent / 'report.html'}")
    return _exit_code(result)


def _record(settings: Settings, reports: bool = True) -> tuple[RunResult, Path]:
    from probe.recording import record

    with _progress() as progress:
        recorded = record(settings, progress, reports)
    _warn(recorded.warning)
    return recorded.result, recorded.path


def _warn(warning: str | None) -> None:
    if warning:
        print(f"gevent-probe: warning: {warning}", file=sys.stderr)


def _gate(args: argparse.Namespace) -> int:
    from probe import gate, results
    from probe.recording import write_all
    from probe.report import terminal
    from probe.variants import select

    settings = _settings(args)
    baseline = _run_result(results.read(settings.baseline), settings.baseline) \
        if settings.baseline else None
    path: Path | None = None
    if settings.results:
        result = _run_result(results.read(settings.results), settings.results)
    else:
        select(settings.variants, settings.measuring_mode)
        result, path = _record(settings, reports=False)
    outcome = gate.evaluate(result, settings, baseline)
    if path is not None:
        _warn(write_all(outcome.result, path))
    color = sys.stdout.isatty()
    print(terminal.results_table(outcome.result, color=color, width=_width()), end="")
    print(terminal.checks_table(outcome.result, outcome.notes, color=color, width=_width()),
          end="")
    if path is not None:
        print(f"results: {path}\nreport:  {path.parent / 'report.html'}")
    _ci_outputs(outcome, settings)
    for line in outcome.failures:
        print(f"gevent-probe: gate failed: {line}", file=sys.stderr)
    if outcome.exit_code == EXIT_USAGE:
        _exit_code(outcome.result)  # says why, on stderr
    return outcome.exit_code


def _run_result(result: RunResult | MatrixResult, path: Path) -> RunResult:
    from probe.model import RunResult

    if not isinstance(result, RunResult):
        raise ProbeError(f"{path} is a {result.mode} result: the gate reads bench or run results")
    return result


def _ci_outputs(outcome: GateOutcome, settings: Settings) -> None:
    import os

    from probe import baseline, results
    from probe.report import ci

    if settings.junit:
        results.write_text(settings.junit, ci.junit(outcome))
    if settings.save_baseline:
        print(baseline.save(outcome.result, settings.save_baseline, settings.baseline_runs))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a") as f:
                f.write(ci.step_summary(outcome))
        except OSError as ex:
            raise ProbeError(f"cannot append to $GITHUB_STEP_SUMMARY: {ex.strerror}") from None


def _selftest(args: argparse.Namespace) -> int:
    """The controls and one healthy driver: 0 only when each is classified right."""
    from probe.report import terminal
    from probe.settings import build

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    flags["variants"] = flags.get("variants") or SELFTEST_VARIANTS
    flags["queries"] = flags.get("queries") or 100
    settings = build("selftest", flags, args.config)
    result, path = _record(settings)
    print(terminal.results_table(result, color=sys.stdout.isatty(), width=_width()), end="")
    from probe.variants import BY_NAME

    wrong = [f"{r.name} gave {r.verdict}, expected {BY_NAME[r.name].expected}"
             for r in result.variants if not r.control and r.verdict != BY_NAME[r.name].expected]
    wrong += [f"{s.name} could not run: {s.reason}" for s in result.skipped]
    if wrong or not result.trusted:
        problems = wrong + list(result.control_problems) + ([result.aborted] if result.aborted
                                                            else [])
        print("gevent-probe: selftest failed: " + "; ".join(problems), file=sys.stderr)
        return EXIT_USAGE
    print(f"selftest passed: {len(result.variants)} variants classified right ({path})")
    return EXIT_OK


def _matrix(args: argparse.Namespace) -> int:
    from probe import matrix, postgres, results
    from probe.recording import write_all
    from probe.report import terminal

    settings = _settings(args)
    versions = matrix.expand(settings.versions or "", settings.package)  # before any server
    run_id, path = results.prepare(settings.output_dir, settings.json_path, "matrix")
    with (results.removed_if_unused(path.parent), postgres.database(settings.dsn) as database,
          _progress() as progress):
        result = matrix.run(settings, database, run_id, versions, progress,
                            sink=lambda partial: results.write(partial, path))
    _warn(write_all(result, path))
    print(terminal.matrix_table(result, color=sys.stdout.isatty(), width=_width()), end="")
    print(f"results: {path}\nreport:  {path.parent / 'report.html'}")
    untrusted = [f"{v.version}: {p}" for v in result.versions
                 for p in (*v.control_problems, *([v.aborted] if v.aborted else []))]
    if untrusted:
        print("gevent-probe: error: the matrix cannot be trusted: " + "; ".join(untrusted),
              file=sys.stderr)
        return EXIT_USAGE
    if not any(v.variants for v in result.versions):
        print("gevent-probe: error: no version could be measured here", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _width() -> int | None:
    """COLUMNS when set, the terminal's width on a terminal; None (nothing cut) otherwise."""
    import os
    import shutil

    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _exit_code(result: RunResult) -> int:
    if result.aborted:
        print(f"gevent-probe: error: {result.aborted}", file=sys.stderr)
        return EXIT_USAGE
    if result.control_problems:
        print("gevent-probe: error: the detectors cannot be trusted here: "
              + "; ".join(result.control_problems), file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from probe import results
    from probe.report import write_reports

    loaded = [results.read(path) for path in args.files]
    folder = args.output_dir
    if folder is None and len(args.files) == 1:
        folder = args.files[0].parent
    elif folder is None:
        _, folder = results.new_run_dir(Path("reports"), "compare")
    try:
        md, html = write_reports(loaded, folder)
    except ProbeError:
        raise
    except Exception as ex:  # e.g. a results file from another version of the tool
        raise ProbeError(f"cannot render the report: {type(ex).__name__}: {ex}") from None
    print(f"report: {html}\n        {md}")
    return EXIT_OK


def _variants(args: argparse.Namespace) -> int:
    from probe.availability import check_all
    from probe.report import terminal

    print(terminal.variants_table(check_all(args.mode), args.mode, color=sys.stdout.isatty(),
                                  width=_width()), end="")
    return EXIT_OK


class _progress:
    """A live line on stderr; plain lines when stderr is not a terminal."""

    def __enter__(self) -> Progress:
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

    def _update(self, step: int, steps: int, name: str, state: str) -> None:
        text = f"[{step}/{steps}] {name}: {state}"
        if self._live is not None:
            self._live.update(self._task, description=text)
        else:
            print(text, file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
