"""The gate's outcome for CI: JUnit XML (a testcase per variant and check) and the Markdown
of $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from probe.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from probe.report.text import md_cell

if TYPE_CHECKING:
    from probe.gate import GateOutcome


def junit(outcome: GateOutcome) -> str:
    """JUnit XML: a testcase per variant and check, the evidence in each failure."""
    result = outcome.result
    checks = result.checks
    failures = sum(not c.passed for c in checks)
    suites = ET.Element("testsuites", name="gevent-probe", tests=str(len(checks)),
                        failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name=f"gevent-probe {result.mode}",
                          tests=str(len(checks)), failures=str(failures), errors="0",
                          skipped="0", timestamp=result.started,
                          time=f"{result.duration_s:.2f}")
    by_name = {v.name: v for v in result.variants}
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname=f"gevent-probe.{check.variant}",
                             name=check.check, time="0")
        if not check.passed:
            failure = ET.SubElement(case, "failure", message=check.detail, type=check.check)
            variant = by_name.get(check.variant)
            lines = list(variant.evidence) if variant else []
            if variant and variant.fix:
                lines.append(f"fix: {variant.fix}")
            failure.text = "\n".join(lines)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def step_summary(outcome: GateOutcome) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY."""
    result = outcome.result
    status = {EXIT_OK: "passed", EXIT_FAILED: "failed",
              EXIT_USAGE: "cannot be trusted here"}[outcome.exit_code]
    lines = [f"### gevent-probe gate ({result.mode}): {status}", "",
             "| variant | check | result | detail |", "|---|---|---|---|"]
    for c in result.checks:
        lines.append(f"| {c.variant} | {c.check} | {'pass' if c.passed else '**FAIL**'} | "
                     f"{_cell(c.detail)} |")
    if result.control_problems:
        lines += ["", "Controls not flagged as expected: " + "; ".join(result.control_problems)]
    if outcome.notes:
        lines += ["", *(f"> {note}" for note in outcome.notes)]
    lines += ["", f"Reproduce: `{result.command}`", ""]
    return "\n".join(lines)


def _cell(text: str, limit: int = 300) -> str:
    text = md_cell(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
