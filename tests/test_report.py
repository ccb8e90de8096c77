"""report.md and report.html, from real results files (tests/data, copied from real runs)."""

from __future__ import annotations

import dataclasses
import io
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from probe import report, results
from probe.errors import ProbeError
from probe.measurement import MAX_EVENTS, StallEvent
from probe.model import MatrixResult, RunResult, Transition, VariantResult, VersionResult
from probe.report import plots

DATA = Path(__file__).parent / "data"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MAX_HTML_BYTES = 1_500_000
# Anything that would make a browser fetch: src/href to a remote or protocol-relative URL,
# url() in CSS, @import, scripts, external stylesheets.
REMOTE_LOAD = re.compile(
    r"""(?:\bsrc|\bhref|xlink:href|\bposter|\baction)\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|url\(\s*["']?\s*(?:https?:)?//|@import|<script\b|rel=["']?stylesheet""", re.IGNORECASE)
LEAKED_PASSWORD = re.compile(r"password\s*=\s*(?!\*\*\*)", re.IGNORECASE)


def load(name: str) -> RunResult:
    result = results.read(DATA / name)
    assert isinstance(result, RunResult)
    return result


@pytest.fixture(scope="module")
def bench() -> RunResult:
    return load("bench-10-variants.json")


@pytest.fixture(scope="module")
def run() -> RunResult:
    return load("run-3-variants.json")


@pytest.fixture(scope="module")
def older() -> RunResult:
    return load("schema2/run-older.json")


@pytest.fixture(scope="module")
def bench_html(bench) -> str:
    return report.render_html([bench])  # figures take a second or two: render once


@pytest.fixture(scope="module")
def run_html(run) -> str:
    return report.render_html([run])


def variant(result: RunResult, name: str) -> VariantResult:
    return next(v for v in result.variants if v.name == name)


def with_variant(result: RunResult, name: str, **changes) -> RunResult:
    variants = tuple(dataclasses.replace(v, **changes) if v.name == name else v
                     for v in result.variants)
    return dataclasses.replace(result, variants=variants)


def table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("| ")][1:]  # minus the header


# -- markdown --------------------------------------------------------------------------------

def test_markdown_bench_has_banner_table_findings_and_command(bench):
    md = report.render_markdown([bench])
    lines = md.splitlines()
    assert len(lines) < 60
    assert "❌ **1 of 5 variants needs attention: hub blocking in psycopg2.**" in md
    rows = table_rows(md)
    assert [row.split("|")[1].strip() for row in rows] == [v.name for v in bench.variants]
    assert "| psycopg2 | **hub-blocking** | psycopg2 2.9.13 |" in md
    assert "| spin-wait | busy-wait · control ✓ |" in md
    assert "**16.4x**" in rows[0]  # past its threshold
    assert "#### psycopg2: hub-blocking" in md
    fix = variant(bench, "psycopg2").fix
    assert fix is not None and f"**Fix:** {fix}" in md
    assert "all 5 flagged as expected" in md
    assert f"```sh\n{bench.command}\n```" in md
    assert "#### wait\\_c" not in md  # controls flagged as expected are a line, not findings


def test_markdown_run_shows_rps_and_each_route(run):
    md = report.render_markdown([run])
    header = next(line for line in md.splitlines() if line.startswith("| variant"))
    assert "RPS" in header and "select1 ms avg / p99" in header and "sleep ms avg / p99" in header
    assert len(table_rows(md)) == len(run.variants)
    assert f"| {variant(run, 'psycopg-binary').measured.http.rps:,.0f} |" in md
    assert "gevent-probe run --variants psycopg2,psycopg-binary,preload" in md


def test_markdown_all_healthy_banner(bench):
    healthy = dataclasses.replace(bench, variants=tuple(
        v for v in bench.variants if v.verdict == "healthy" or v.control))
    md = report.render_markdown([healthy])
    assert ("✅ **All 4 variants healthy under gevent; all 5 controls flagged as expected, so "
            "the detectors work here.**") in md
    assert "**Findings**" not in md


def test_banner_says_when_the_detectors_cannot_be_trusted(bench):
    broken = with_variant(bench, "spin-wait", verdict="healthy")
    untrusted = dataclasses.replace(
        broken, variants=tuple(v for v in broken.variants if v.name != "psycopg2"),
        control_problems=("spin-wait: healthy, expected busy-wait",))
    banner = report.banner(untrusted)
    assert banner.level == "warn"
    assert "cannot be trusted" in banner.text
    md = report.render_markdown([untrusted])
    assert "⚠️" in md and "spin-wait: healthy, expected busy-wait" in md
    assert "#### spin-wait: healthy (control: expected busy-wait)" in md


def test_banner_of_an_aborted_run(run):
    aborted = dataclasses.replace(run, aborted="PostgreSQL stopped answering", complete=False)
    banner = report.banner(aborted)
    assert banner.level == "bad" and "PostgreSQL stopped answering" in banner.text


def test_markdown_escapes_what_github_would_eat():
    assert report.md_text("in <module> at *x*") == "in &lt;module> at \\*x\\*"
    assert report.md_text("wait_poll in _maybe_gen `a_<b>_`") == \
        "wait_poll in \\_maybe_gen `a_<b>_`"
    assert report.md_cell("a | b\nc") == "a \\| b c"


# -- html ------------------------------------------------------------------------------------

def assert_self_contained(html: str) -> None:
    assert len(html.encode()) < MAX_HTML_BYTES
    assert not REMOTE_LOAD.search(html), REMOTE_LOAD.search(html)
    root = ET.fromstring(html)  # well-formed, so any parser reads it the same way
    assert root.tag == "html"
    parser = HTMLParser()
    parser.feed(html)
    parser.close()
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "ids must be unique across the inline SVGs"


def test_html_bench_is_one_self_contained_file(bench, bench_html):
    assert_self_contained(bench_html)
    root = ET.fromstring(bench_html)
    svgs = root.findall(".//{http://www.w3.org/2000/svg}svg")
    assert len(svgs) == 2  # latency percentiles, probe signals (no timeline in bench)
    assert all(svg.get("viewBox") for svg in svgs)
    banner = root.find(".//section[@class='banner bad']")
    assert banner is not None
    assert "hub blocking in psycopg2" in "".join(banner.itertext())
    text = "".join(root.itertext())
    for v in bench.variants:
        assert v.name in text
    assert variant(bench, "psycopg2").evidence[0] in text
    assert variant(bench, "psycopg2").fix in text
    assert bench.command in text
    assert "<code>cur.execute(sql, params or None)</code>" in bench_html  # evidence code spans
    assert "SELECT 1, timed in-greenlet" in bench_html  # the plot's title stays text
    assert "<image" not in bench_html  # no rasterised images inside the SVGs


def test_html_run_has_timelines_routes_and_stall_stacks(run, run_html):
    assert_self_contained(run_html)
    root = ET.fromstring(run_html)
    labels = [svg.get("aria-label") for svg in root.iter("{http://www.w3.org/2000/svg}svg")]
    assert labels == ["Latency by percentile, per variant",
                      *(f"Load phase of {v.name}, second by second" for v in run.variants),
                      "Probe signals against their thresholds, per variant"]
    assert "HTTP route select1, end to end" in run_html
    headers = [("".join(th.itertext())) for th in root.iter("th")]
    assert "RPS" in headers and "select1 ms avg / p99" in headers
    summaries = ["".join(s.itertext()) for s in root.iter("summary")]
    held = variant(run, "psycopg2").measured.slices.longest[0]  # the longest run that held it
    assert held.kind == "blocked" and any(held.frames[0] in s for s in summaries)
    pres = ["".join(p.itertext()) for p in root.iter("pre")]
    assert any(held.stack[-1] in p for p in pres)
    assert re.search(r"\+\d+\.\d\d s", run_html)  # placed on the load's timeline


def test_html_older_results_without_load_start_still_render(older):
    html = report.render_html([older])
    assert_self_contained(html)
    assert "predate the recorded load" in html
    assert "23:47:53.565" in html  # events listed by clock time instead


def test_html_shows_gate_checks_skipped_and_control_problems(bench):
    from probe.model import CheckResult, Unavailable

    gated = dataclasses.replace(
        bench, checks=(CheckResult("psycopg2", "verdict", False, "hub-blocking (psycopg2)"),
                       CheckResult("psycopg-c", "max-p99", True, "p99 1.9 ms, limit 5 ms")),
        skipped=(Unavailable("psycopg-c-old", "psycopg-c 3.1.8 is not installed",
                             "pip install 'psycopg[c]==3.1.8'"),),
        control_problems=("spin-wait: healthy, expected busy-wait",))
    html = report.render_html([gated])
    assert_self_contained(html)
    assert 'id="checks"' in html and "FAIL" in html
    assert "pip install &#39;psycopg[c]==3.1.8&#39;" in html
    assert "The detectors cannot be trusted here" in html
    md = report.render_markdown([gated])
    assert "**Gate:** 1 of 2 checks passed:" in md
    assert "**Skipped** psycopg-c-old" in md


def nine_variant_run(run: RunResult) -> RunResult:
    """The largest report we expect: 9 run variants, each with as many stall events as a
    results file keeps."""
    variants = []
    for copy in range(3):
        for v in run.variants:
            http = v.measured.http
            assert http is not None
            events = tuple(StallEvent(http.started + i * http.duration_s / MAX_EVENTS, 11.0,
                                      ("blocked", "busy", "preempted")[i % 3])
                           for i in range(MAX_EVENTS))
            stalls = dataclasses.replace(v.measured.stalls, events=events)
            measured = dataclasses.replace(v.measured, stalls=stalls)
            variants.append(dataclasses.replace(v, name=f"{v.name}-{copy}", measured=measured))
    return dataclasses.replace(run, variants=tuple(variants))


def test_html_of_nine_run_variants_with_every_stall_stays_small(run):
    html = report.render_html([nine_variant_run(run)])
    assert_self_contained(html)
    assert html.count('class="plot"') == 1 + 9 + 1


# -- comparison ------------------------------------------------------------------------------

def test_comparison_shows_verdict_change_side_by_side(run):
    after = with_variant(run, "psycopg2", verdict="healthy", fix=None,
                         evidence=("psycogreen made it cooperative.",))
    after = dataclasses.replace(after, run_id="run-after")
    md = report.render_markdown([run, after])
    assert "Verdicts changed from A to B: psycopg2 hub-blocking → healthy." in md
    assert "| variant | A | B | changes |" in md
    row = next(line for line in md.splitlines() if line.startswith("| psycopg2 |"))
    assert row.count("**hub-blocking**") == 1 and "healthy ·" in row
    assert "verdict hub-blocking → healthy (A→B)" in row
    assert run.run_id in md and "run-after" in md

    html = report.render_html([run, after])
    assert_self_contained(html)
    root = ET.fromstring(html)
    table = root.find(".//section[@id='comparison']//table")
    assert table is not None
    assert ["".join(th.itertext()).split()[0] for th in table.iter("th")] == \
        ["variant", "A", "B", "changes"]
    changed = [td for td in table.iter("td") if td.get("class") == "changed"]
    assert len(changed) == 2  # both sides of psycopg2's verdict
    assert 'aria-label="Load phase of psycopg2, second by second"' in html
    assert "psycopg2 · B" in html  # the timeline's second column, the plots' legends


def test_comparison_of_real_runs_matches_variants_by_name(older, run):
    md = report.render_markdown([older, run])
    assert "No verdict changed across A and B" in md
    assert "not measured in B" in md  # psycopg2-green ran only in A
    assert re.search(r"p99 select1 \d+ → \d+ ms \([+-]\d+%, A→B\)", md)
    html = report.render_html([older, run])
    assert_self_contained(html)
    assert older.run_id in html and run.run_id in html


def test_comparison_shows_driver_version_changes(run):
    old_runtime = dataclasses.replace(variant(run, "psycopg2").runtime, driver_version="2.9.9")
    before = with_variant(run, "psycopg2", measured=dataclasses.replace(
        variant(run, "psycopg2").measured, runtime=old_runtime))
    md = report.render_markdown([before, run])
    assert "psycopg2 2.9.9 → psycopg2 2.9.13 (A→B)" in md


# -- safety and API --------------------------------------------------------------------------

def test_no_password_reaches_a_report(run):
    scrubbed = with_variant(run, "psycopg2", evidence=(
        "could not connect to 'host=db password=*** user=app'",))
    leaky = dataclasses.replace(
        with_variant(run, "psycopg2", evidence=("connect failed: password=hunter2 host=db",
                                                 "`dsn='password=hunter2'` in the `env`"),
                     fix="check postgresql://app:hunter2@db/app"),
        command="gevent-probe run --dsn 'host=db password=hunter2'",
        settings={**run.settings, "dsn": "postgresql://app:hunter2@db/app"})
    for result in (scrubbed, leaky):
        html = report.render_html([result])
        assert_self_contained(html)  # redacting never swallows markup
        for text in (report.render_markdown([result]), html):
            assert not LEAKED_PASSWORD.search(text)
            assert "hunter2" not in text
    assert "password=***" in report.render_markdown([scrubbed])


def test_write_reports_writes_both_files(tmp_path, bench):
    md, html = report.write_reports([bench], tmp_path / "out")
    assert (md.name, html.name) == ("report.md", "report.html")
    assert md.read_text().startswith("### gevent-probe bench report")
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.md"]


def test_a_matrix_renders_its_versions_and_transitions(bench):
    with pytest.raises(ProbeError, match="no results"):
        report.render_markdown([])
    matrix = MatrixResult(
        run_id="m", mode="matrix", command="gevent-probe matrix --versions 3.1.13,3.1.14",
        started="", duration_s=0, complete=True, package="psycopg", environment={},
        settings={},
        versions=(VersionResult("3.1.13", variants=(_named(bench, "wait_c"),)),
                  VersionResult("3.1.14", variants=(_named(bench, "psycopg-binary"),)),
                  VersionResult("99.0", unavailable="cannot be installed here")),
        transitions=(Transition("psycopg-binary", "3.1.13", "3.1.14", "hub-blocking",
                                "healthy"),))
    md = report.render_markdown([matrix])
    assert "hub-blocking in 3.1.13 → healthy in 3.1.14" in md
    assert "cannot be installed here" in md
    html = report.render_html([matrix])
    assert_self_contained(html)
    assert "Transitions" in html and "3.1.14" in html
    with pytest.raises(ProbeError, match="cannot be compared"):
        report.render_markdown([matrix, bench])


def _named(result, name):
    """A variant of `result`, renamed psycopg-binary, as a matrix holds one per version."""
    v = next(v for v in result.variants if v.name == name)
    return dataclasses.replace(v, name="psycopg-binary", control=False, expected=None)


def test_importing_probe_report_does_not_import_matplotlib():
    code = ("import sys, probe, probe.report; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- plots -----------------------------------------------------------------------------------

def test_percentile_curve_is_resampled_and_ends_at_the_max(bench):
    from probe import stats

    hist = stats.decode(variant(bench, "psycopg2").measured.histograms["db"])
    xs, ys = plots.percentile_curve(hist)
    assert len(xs) == plots.CURVE_POINTS
    assert xs[0] == 1 and xs[-1] == hist.get_total_count()
    assert ys == sorted(ys)
    assert ys[-1] == hist.get_max_value() / 1000
    for x, y in list(zip(xs, ys, strict=True))[::7]:  # the same as hdrh's own percentiles
        assert y == pytest.approx(hist.get_value_at_percentile(100 * (1 - 1 / x)) / 1000)


def test_stall_marks_merge_when_they_would_touch():
    events = [StallEvent(100.0, 10), StallEvent(100.011, 10), StallEvent(103.0, 500)]
    assert plots.merge_spans(events, 100.0, min_width=0.02) == [
        (0.0, pytest.approx(0.031)), (3.0, 0.5)]


# -- a real browser --------------------------------------------------------------------------

@pytest.mark.slow  # needs Debian's chromium (.ci/run installs it)
@pytest.mark.parametrize("name", ["bench-10-variants.json", "run-3-variants.json"])
def test_report_renders_offline_in_chromium(tmp_path, name):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    result = load(name)
    _, html = report.write_reports([result], tmp_path)
    url = html.resolve().as_uri()
    requested: list[str] = []
    errors: list[str] = []

    def route(r) -> None:
        requested.append(r.request.url)
        if r.request.url == url or r.request.url.startswith("data:"):
            r.continue_()
        else:
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", route)
            page.on("request", lambda r: requested.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url, wait_until="load")
            page.wait_for_function(
                "performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
            render_ms = page.evaluate(
                "(() => { const n = performance.getEntriesByType('navigation')[0];"
                " return n.loadEventEnd - n.startTime; })()")
            text = page.inner_text("body")
            png = page.screenshot(full_page=True)
        finally:
            browser.close()

    print(f"{name}: report.html {html.stat().st_size / 1000:.0f} KB, "
          f"navigation start to load event {render_ms:.0f} ms")
    assert [u for u in requested if u != url and not u.startswith("data:")] == []
    assert errors == []
    assert report.banner(result).text in text
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 24) or []
    assert image.height > 2000 and len(colours) > 200  # text, badges and plots, not blank
