"""A measurement recorded to disk: the database, the variant loop, results.json rewritten
after every variant, and the reports once it is done.

What was measured is never lost: results.json is written (atomically) after each variant, so
an interrupted run (Ctrl-C, SIGTERM) keeps it, marked incomplete, with its reports; and a
report that fails to render costs the report, never the results, which are written first.
The CLI prints and exits; this module only records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from probe.errors import Interrupted
from probe.model import MatrixResult, RunResult
from probe.settings import Settings
from probe.variant_loop import Progress


@dataclass(frozen=True)
class Recorded:
    result: RunResult
    path: Path  # results.json
    warning: str | None = None  # the reports could not be rendered (the results are whole)


def record(settings: Settings, progress: Progress | None = None,
           reports: bool = True) -> Recorded:
    """Measure as `settings` say, writing results.json after every variant. `reports`: render
    them too (the gate renders them once it has judged)."""
    from probe import postgres, results, variant_loop

    run_id, path = results.prepare(settings.output_dir, settings.json_path,
                                   settings.measuring_mode)
    written: list[RunResult] = []  # the last partial result on disk, for an interrupted run

    def sink(partial: RunResult) -> None:
        results.write(partial, path)
        written[:] = [partial]

    try:
        with results.removed_if_unused(path.parent), \
                postgres.database(settings.dsn, target=bool(settings.target)) as database:
            app, only = None, None
            if settings.target:
                from probe.run_transport import target_variant

                only = target_variant(settings)
            elif settings.measuring_mode == "run":
                from probe.run_transport import check_app

                app = check_app(settings, database.dsn)
            result = variant_loop.run(settings, database, run_id, progress, sink=sink, app=app,
                                      only=only)
    except KeyboardInterrupt:
        if written:
            warning = write_all(written[0], path)
            raise Interrupted(_interrupted(written[0], path)
                              + (f"; {warning}" if warning else "")) from None
        raise
    return Recorded(result, path, write_all(result, path) if reports else None)


def _interrupted(result: RunResult, path: Path) -> str:
    done = ", ".join(v.name for v in result.variants) or "none"
    return (f"interrupted after {len(result.variants)} variant(s) ({done}); everything it "
            f"started was stopped. {path} holds what was measured (complete: false), "
            f"with {path.parent / 'report.md'} and {path.parent / 'report.html'}")


def write_all(result: RunResult | MatrixResult, path: Path) -> str | None:
    """results.json, then report.md and report.html beside it; a warning when the reports
    could not be rendered (the results are written first, and whole)."""
    from probe import results
    from probe.report import write_reports

    results.write(result, path)
    try:
        write_reports([result], path.parent)
    except Exception as ex:  # a bug of ours in the report must not lose the run's exit code
        return (f"the report could not be written ({type(ex).__name__}: {ex}); {path} is "
                "complete")
    return None
