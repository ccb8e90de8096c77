"""The data gevent-probe produces, as frozen dataclasses, and their one JSON mapping.

The results (VariantResult, RunResult, MatrixResult), which results.json holds; what one
measurement saw is in probe.measurement, what measured processes report on the way in
probe.messages. Everything goes through
`to_dict` / `from_dict` here, so the schema lives in one place. A change
that breaks readers of results.json bumps SCHEMA.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from probe.measurement import AppInfo, Measurement, Runtime

SCHEMA = "gevent-probe/3"

Verdict = Literal["healthy", "hub-blocking", "busy-wait", "computing", "contention", "deadlock",
                  "errors", "regressed", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = typing.get_args(Verdict)
Mode = Literal["bench", "run"]

READABLE = ("gevent-probe/2", SCHEMA)
T = TypeVar("T")


@dataclass(frozen=True)
class Repeat:
    """One of K interleaved repeats of a variant, kept for the statistics of `gate`."""

    verdict: Verdict
    serialization_ratio: float
    histograms: dict[str, str]  # "db", and "http:<route>" in run
    started: str = ""
    run_id: str = ""  # the run that measured it: a baseline keeps the repeats of several runs


@dataclass(frozen=True)
class VariantResult:
    name: str
    control: bool
    expected: Verdict | None  # the verdict a control must get
    verdict: Verdict
    evidence: tuple[str, ...]
    fix: str | None
    measured: Measurement
    repeats: tuple[Repeat, ...] = ()
    notes: tuple[str, ...] = ()  # findings a reader should act on whatever the verdict

    @property
    def runtime(self) -> Runtime:
        return self.measured.runtime


@dataclass(frozen=True)
class Unavailable:
    """A variant that could not run here, and how to make it available."""

    name: str
    reason: str
    hint: str


@dataclass(frozen=True)
class CheckResult:
    """One gate check on one variant (or route)."""

    variant: str
    check: str  # e.g. "max-p99", "verdict"
    passed: bool
    detail: str
    value: float | None = None
    limit: float | None = None


@dataclass(frozen=True)
class RunResult:
    run_id: str
    mode: Mode
    command: str  # how to reproduce it, password-free
    started: str
    duration_s: float
    complete: bool  # False while running, or when it was interrupted or aborted
    environment: dict[str, Any]
    settings: dict[str, Any]
    variants: tuple[VariantResult, ...]
    skipped: tuple[Unavailable, ...] = ()
    control_problems: tuple[str, ...] = ()  # controls not flagged as expected
    aborted: str | None = None  # why the run stopped before measuring every variant
    checks: tuple[CheckResult, ...] = ()  # gate only
    app: AppInfo | None = None  # `run --app`: the user's app and the drivers it loaded
    schema: str = SCHEMA

    @property
    def trusted(self) -> bool:
        return not self.control_problems and self.aborted is None


@dataclass(frozen=True)
class Transition:
    variant: str
    from_version: str
    to_version: str
    from_verdict: Verdict
    to_verdict: Verdict


@dataclass(frozen=True)
class VersionResult:
    version: str
    variants: tuple[VariantResult, ...] = ()
    unavailable: str | None = None  # why this version could not be installed here
    control_problems: tuple[str, ...] = ()  # controls not flagged as expected
    aborted: str | None = None


@dataclass(frozen=True)
class MatrixResult:
    run_id: str
    mode: str  # "matrix"
    command: str
    started: str
    duration_s: float
    complete: bool
    package: str
    environment: dict[str, Any]
    settings: dict[str, Any]
    versions: tuple[VersionResult, ...]
    transitions: tuple[Transition, ...] = ()
    schema: str = SCHEMA


# --- the one JSON mapping --------------------------------------------------------------------

def to_dict(obj: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a model object (tuples become lists)."""
    return dataclasses.asdict(obj)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a model object from `to_dict` output, nested dataclasses included."""
    if cls in (RunResult, MatrixResult) and data.get("schema", SCHEMA) not in READABLE:
        raise ValueError(f"its schema is {data.get('schema')!r}; this release reads "
                         f"{' and '.join(READABLE)} (CHANGELOG.md: what each changed)")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(inner[0], value)
    if origin is tuple:
        (item, *_rest) = typing.get_args(hint)
        return tuple(_convert(item, v) for v in value)
    if origin is dict:
        return dict(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    return value
