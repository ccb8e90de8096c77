"""The view the report's templates render: plain frozen dataclasses, built by probe.report."""

from __future__ import annotations

from dataclasses import dataclass

from probe.measurement import HeldSlice
from probe.model import CheckResult, RunResult, VariantResult


@dataclass(frozen=True)
class Banner:
    level: str  # "good", "info", "warn" or "bad": the banner's colour
    text: str  # one sentence
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    text: str
    flagged: bool = False  # at or past the threshold that flags it
    title: str = ""


@dataclass(frozen=True)
class Row:
    variant: VariantResult
    driver: str
    wait: str
    cells: tuple[Cell, ...]  # one per RunView.headers


@dataclass(frozen=True)
class Finding:
    variant: VariantResult
    note: str
    as_expected: bool  # a control flagged as it should be: evidence the detectors work


@dataclass(frozen=True)
class StallView:
    """Who held the hub in one variant: its longest runs, and when the heartbeat woke late."""

    variant: VariantResult
    events: tuple[tuple[str, str, str], ...]  # (when, ms, kind), the first MAX_EVENTS_SHOWN
    hidden: int  # events not listed
    longest: tuple[tuple[str, HeldSlice], ...]  # (when, slice)


@dataclass(frozen=True)
class RunView:
    label: str  # "" alone, "A", "B"... when comparing
    result: RunResult
    banner: Banner
    headers: tuple[tuple[str, str], ...]  # (header, what it means)
    rows: tuple[Row, ...]
    findings: tuple[Finding, ...]
    stalls: tuple[StallView, ...]
    controls: tuple[tuple[str, str, str, bool], ...]  # (name, expected, verdict, ok)
    notes: tuple[str, ...]  # why some numbers deserve less trust
    checks: tuple[CheckResult, ...]  # failures first
    environment: tuple[tuple[str, str], ...]
    packages: tuple[tuple[str, str], ...]
    settings: tuple[tuple[str, str], ...]

    @property
    def title(self) -> str:
        return f"{self.label}: {self.result.run_id}" if self.label else self.result.run_id


@dataclass(frozen=True)
class Compared:
    """One variant of one result, in the comparison table."""

    verdict: str
    driver: str
    wait: str
    p99: tuple[tuple[str, str], ...]  # (what, "12.3 ms (+20%)")
    throughput: str


@dataclass(frozen=True)
class ComparedRow:
    name: str
    cells: tuple[Compared | None, ...]  # one per result; None where it was not measured
    changes: tuple[str, ...]

    @property
    def verdict_changed(self) -> bool:
        return len({c.verdict for c in self.cells if c is not None}) > 1


@dataclass(frozen=True)
class Comparison:
    rows: tuple[ComparedRow, ...]
    environment: tuple[tuple[str, tuple[str, ...], bool], ...]  # (key, values, differ)


@dataclass(frozen=True)
class MatrixCell:
    verdict: str
    detail: str  # p99, sleeps, wait function


@dataclass(frozen=True)
class MatrixRow:
    version: str
    unavailable: str | None
    cells: tuple[MatrixCell | None, ...]
