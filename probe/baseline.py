"""A saved baseline that keeps the repeats of several runs, so that a gate sees the noise
between runs and not only within one.

A run's repeats share its minutes on the machine: on a VM, a quiet or a busy quarter of an
hour moves every repeat of a run alike, which the spread of one run's repeats cannot show,
and a baseline saved in a lucky minute made later unchanged runs look slower. Saving onto
an existing baseline of the same mode adds this run's repeats to the latest runs already
there (each repeat tagged with the run that measured it), up to `runs` runs; the verdicts
and everything else come from the newest run. compare.compare_ratio then treats a run, not a
repeat, as the unit, once the baseline holds enough runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from probe import results
from probe.errors import ProbeError
from probe.model import Repeat, RunResult, VariantResult

MIN_RUNS = 3  # runs a baseline needs before the noise between them can be estimated


def tagged(repeats: tuple[Repeat, ...], run_id: str) -> tuple[Repeat, ...]:
    """Repeats with the run that measured them (files older than this field had none)."""
    return tuple(r if r.run_id else dataclasses.replace(r, run_id=run_id) for r in repeats)


def runs_of(repeats: tuple[Repeat, ...]) -> list[str]:
    """The runs these repeats came from, oldest first."""
    return list(dict.fromkeys(r.run_id for r in repeats))


def merged(new: RunResult, old: RunResult | None, runs: int) -> RunResult:
    """`new` as a baseline, with the repeats of up to `runs` - 1 latest runs of `old`."""
    def keep(v: VariantResult) -> VariantResult:
        mine = tagged(v.repeats, new.run_id)
        before = next((o for o in old.variants if o.name == v.name), None) if old else None
        if before is None or runs <= 1:
            return dataclasses.replace(v, repeats=mine)
        theirs = tagged(before.repeats, old.run_id if old else "")
        kept = set(runs_of(theirs)[-(runs - 1):])
        return dataclasses.replace(v, repeats=(*(r for r in theirs if r.run_id in kept), *mine))

    if old is not None and old.mode != new.mode:
        old = None
    return dataclasses.replace(new, variants=tuple(keep(v) for v in new.variants))


def save(new: RunResult, path: Path, runs: int) -> str:
    """Write the baseline; one line saying what it holds."""
    old = None
    if path.is_file() and runs > 1:
        try:
            found = results.read(path)
            old = found if isinstance(found, RunResult) else None
        except ProbeError:  # unreadable, or a schema this release cannot read: replaced
            old = None
    baseline = merged(new, old, runs)
    held = max((len(runs_of(v.repeats)) for v in baseline.variants), default=1)
    results.write(baseline, path)
    return f"baseline {path}: {held} run(s)" + (
        f"; the gate sees the noise between runs from {MIN_RUNS}" if held < MIN_RUNS else "")
