"""The gate's decisions on results built by hand, and the real thing on a real machine."""

import dataclasses
import json
import os
import subprocess
import xml.etree.ElementTree as ET

import pytest

from probe import gate, stats
from probe.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ProbeError
from probe.measurement import HttpView, RouteStats
from probe.model import Repeat
from probe.report import ci
from probe.settings import build
from tests.conftest import probe_cli, venv_with
from tests.factories import latency, measurement
from tests.test_model import make_run


def variant(name: str, verdict: str = "healthy", control: bool = False, **measured):
    v = make_run().variants[0]
    return dataclasses.replace(v, name=name, verdict=verdict, control=control,
                               expected="hub-blocking" if control else None,
                               measured=measurement(**measured))


def run_of(*variants, **kw):
    return make_run(variants=variants, skipped=(), **kw)


def test_pathologies_and_inconclusive_fail_healthy_passes():
    result = run_of(variant("psycopg-binary"), variant("psycopg2", "hub-blocking"))
    outcome = gate.evaluate(result, build("gate", {}))
    assert outcome.exit_code == EXIT_FAILED
    assert outcome.failures == ("psycopg2: verdict: hub-blocking (psycopg 3.3.8 binary, "
                                "wait_poll): a sentence",)
    assert gate.evaluate(run_of(variant("psycopg-binary")), build("gate", {})).exit_code == 0
    lenient = build("gate", {"fail_on": "busy-wait"})
    assert gate.evaluate(result, lenient).exit_code == EXIT_OK


def test_unnamed_controls_prove_the_detectors_and_a_wrong_one_is_untrusted():
    ok = run_of(variant("psycopg-binary"), variant("wait_c", "hub-blocking", control=True))
    assert gate.evaluate(ok, build("gate", {})).exit_code == EXIT_OK
    wrong = run_of(variant("psycopg-binary"), variant("wait_c", "healthy", control=True),
                   control_problems=("wait_c gave healthy, expected hub-blocking",))
    outcome = gate.evaluate(wrong, build("gate", {}))
    assert outcome.exit_code == EXIT_USAGE
    named = gate.evaluate(ok, build("gate", {"variants": "wait_c"}))
    assert named.exit_code == EXIT_FAILED  # a control gated on purpose fails like any


def test_latency_limits_per_route_and_unknown_routes_or_variants_are_errors():
    http = HttpView(scenario="mixed", users=50, duration_s=10, rps=100, error_rate=0,
                    routes=(RouteStats("select1", latency(10, p99=30), 1000, 0, 100),
                            RouteStats("sleep", latency(60, p99=120), 50, 0, 5)),
                    loadgen_processes=1, loadgen_core_share=0.5, loadgen_saturated=False)
    result = run_of(variant("psycopg-binary", http=http), mode="run")
    limits = build("gate", {"max_p99": "select1=25,sleep=150", "mode": "run"})
    outcome = gate.evaluate(result, limits)
    assert [(c.check, c.passed) for c in outcome.result.checks] == [
        ("verdict", True), ("max-p99:select1", False), ("max-p99:sleep", True)]
    with pytest.raises(ProbeError, match="no route nope"):
        gate.evaluate(result, build("gate", {"max_p99": "nope=3", "mode": "run"}))
    with pytest.raises(ProbeError, match="no results for variant"):
        gate.evaluate(result, build("gate", {"variants": "psycopg-c"}))
    with pytest.raises(ProbeError, match="baseline variant psycopg2-green"):
        gate.evaluate(result, build("gate", {"max_p99_ratio": 1.5}))


def test_junit_is_valid_xml_with_a_testcase_per_check():
    result = run_of(variant("psycopg-binary"), variant("psycopg2", "hub-blocking"))
    xml = ci.junit(gate.evaluate(result, build("gate", {"max_p99": "100"})))
    root = ET.fromstring(xml.encode())
    cases = root.findall("./testsuite/testcase")
    assert root.tag == "testsuites" and len(cases) == 4
    failed = [c for c in cases if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [
        ("gevent-probe.psycopg2", "verdict")]
    assert "a sentence" in failed[0].find("failure").text


def sampled(v, ms: float, n: int = 500):
    """The variant with n SELECT 1 latencies of `ms` recorded, in one repeat."""
    h = stats.new_histogram()
    h.record_value(int(ms * 1000), n)
    histograms = {"db": stats.encode(h)}
    return dataclasses.replace(v, measured=dataclasses.replace(v.measured, histograms=histograms),
                               repeats=(Repeat(v.verdict, 1.05, histograms),))


def with_repeats(v, *p99_ms: float, n: int = 500):
    """The variant with one repeat per p99 given: n SELECT 1 latencies around it."""
    repeats = []
    for ms in p99_ms:
        h = stats.new_histogram()
        h.record_value(int(ms * 500), n)  # half the p99...
        h.record_value(int(ms * 1000), n // 50)  # ...and the tail at the p99
        repeats.append(Repeat(v.verdict, 1.05, {"db": stats.encode(h)}))
    return dataclasses.replace(v, repeats=tuple(repeats))


def test_unchanged_code_on_a_noisy_machine_passes_and_says_what_it_resolves():
    # p99 0.83-1.98 ms between runs of the same code: the spread the README's soak measured
    baseline = run_of(with_repeats(variant("psycopg2-green"), 0.83, 1.4, 1.98))
    now = run_of(with_repeats(variant("psycopg2-green"), 1.9, 1.2, 1.5))
    outcome = gate.evaluate(now, build("gate", {}), baseline)
    assert outcome.exit_code == EXIT_OK, outcome.failures
    (check,) = [c for c in outcome.result.checks if c.check == "p99-ratio"]
    assert check.passed and check.detail.startswith("undecided: SELECT 1 p99")
    assert "straddles 1.2x" in check.detail
    (note,) = [n for n in outcome.notes if "finer than this machine resolves" in n]
    assert "ranged 0.83-1.98 ms over its 3 repeats" in note and "which pass" in note
    strict = gate.evaluate(now, build("gate", {"on_undecided": "fail"}), baseline)
    assert strict.exit_code == EXIT_FAILED and "which fail" in " ".join(strict.notes)


def test_a_slowdown_beyond_the_noise_is_regressed_with_its_size():
    baseline = run_of(with_repeats(variant("psycopg-binary"), 1.0, 1.1, 0.95))
    now = run_of(with_repeats(variant("psycopg-binary"), 3.1, 2.9, 3.3))
    outcome = gate.evaluate(now, build("gate", {}), baseline)
    assert outcome.exit_code == EXIT_FAILED
    (v,) = outcome.result.variants
    assert v.verdict == "regressed" and "every one of the 3 repeats" in v.evidence[0]
    assert "3.0" in v.evidence[0] or "3.1" in v.evidence[0]  # its size
    # These repeats resolve 1.2x: nothing to warn about, but that the baseline is one run.
    (note,) = outcome.notes
    assert "The baseline holds 1 run(s)" in note and "--baseline-runs" in note


def test_a_baseline_of_runs_compares_run_to_run_and_says_nothing_of_it():
    runs = [with_repeats(variant("psycopg-binary"), *scales) for scales in
            ((1.0, 1.02, 0.98), (1.5, 1.45, 1.55), (1.2, 1.25, 1.15), (0.9, 0.92, 0.88))]
    repeats = tuple(dataclasses.replace(r, run_id=f"bench-{n}")
                    for n, v in enumerate(runs) for r in v.repeats)
    baseline = run_of(dataclasses.replace(runs[0], repeats=repeats))
    now = run_of(with_repeats(variant("psycopg-binary"), 1.5, 1.52, 1.48))
    outcome = gate.evaluate(now, build("gate", {}), baseline)
    assert outcome.exit_code == EXIT_OK, outcome.failures
    (check,) = [c for c in outcome.result.checks if c.check == "p99-ratio"]
    assert "against 4 runs of the baseline" in check.detail
    assert not [n for n in outcome.notes if "holds" in n]


def with_median_and_tail(v, *repeats_ms: tuple[float, float], n: int = 500):
    """One repeat per (p50, p99) given: n latencies at the median, n/50 in the tail."""
    out = []
    for p50, p99 in repeats_ms:
        h = stats.new_histogram()
        h.record_value(int(p50 * 1000), n)
        h.record_value(int(p99 * 1000), n // 50)
        out.append(Repeat(v.verdict, 1.05, {"db": stats.encode(h)}))
    return dataclasses.replace(v, repeats=tuple(out))


def test_every_request_slower_is_regressed_by_its_median_when_the_tail_is_all_noise():
    # 10 ms more per request: the median moves 1 -> 11 ms, the tail was 5-40 ms anyway
    then = with_median_and_tail(variant("psycopg-binary"), (1.0, 5.0), (1.05, 20.0), (0.95, 40))
    now = with_median_and_tail(variant("psycopg-binary"), (11, 15), (11.5, 30), (10.5, 45))
    outcome = gate.evaluate(run_of(now), build("gate", {}), run_of(then))
    assert outcome.exit_code == EXIT_FAILED
    checks = {c.check: c for c in outcome.result.checks}
    assert checks["p99-ratio"].passed and "undecided" in checks["p99-ratio"].detail
    assert not checks["p50-ratio"].passed
    (v,) = outcome.result.variants
    assert v.verdict == "regressed" and v.evidence[0].startswith("SELECT 1 p50 11.")
    unchanged = with_median_and_tail(variant("psycopg-binary"), (1.0, 30), (0.98, 8), (1.02, 12))
    assert gate.evaluate(run_of(unchanged), build("gate", {}), run_of(then)).exit_code == EXIT_OK


def test_drivers_of_one_run_are_compared_by_their_tail_only():
    # Their medians differ by design (each driver's own CPU cost): not a regression.
    fast = with_median_and_tail(variant("psycopg2-green"), (0.5, 2.0), (0.5, 2.1), (0.5, 1.9))
    slow = with_median_and_tail(variant("psycopg-binary"), (1.0, 2.0), (1.0, 2.1), (1.0, 1.9))
    outcome = gate.evaluate(run_of(slow, fast), build("gate", {"max_p99_ratio": 1.2}))
    assert outcome.exit_code == EXIT_OK, outcome.failures
    assert [c.check for c in outcome.result.checks if "ratio" in c.check] == ["p99-ratio"]


def test_a_comparison_that_cannot_mean_anything_is_an_error_not_a_pass():
    healthy = sampled(variant("psycopg-binary"), 1.0)
    blocking = sampled(variant("psycopg2-green", "hub-blocking"), 0.1)
    ratio = build("gate", {"max_p99_ratio": 1.5})
    with pytest.raises(ProbeError, match="psycopg2-green is hub-blocking: its p99 is no ref"):
        gate.evaluate(run_of(healthy, blocking), ratio)
    unrecorded = variant("psycopg2-green")  # an empty "db" histogram: nothing to compare
    with pytest.raises(ProbeError, match="no latency in common"):
        gate.evaluate(run_of(healthy, unrecorded), ratio)
    with pytest.raises(ProbeError, match="measured by run, this run by bench"):
        gate.evaluate(run_of(healthy), build("gate", {}), run_of(healthy, mode="run"))


def test_a_baseline_from_another_machine_says_so():
    now = run_of(sampled(variant("psycopg-binary"), 1.0))
    then = dataclasses.replace(now, environment={"cpu_count": 8, "packages": {
        "psycopg": "3.1.13"}, "postgresql": {"version": "15.18"}})
    now = dataclasses.replace(now, environment={"cpu_count": 2, "packages": {
        "psycopg": "3.3.8"}, "postgresql": {"version": "18.6"}})
    notes = gate.environment_notes(now, then)
    assert "cpu_count: 8 in the baseline, 2 here" in notes
    assert "PostgreSQL major: 15 in the baseline, 18 here" in notes
    assert "psycopg: 3.1.13 in the baseline, 3.3.8 here" in notes
    summary = ci.step_summary(gate.evaluate(now, build("gate", {}), then))
    assert "different environment" in summary and "| psycopg-binary | verdict |" in summary


# -- the real thing --------------------------------------------------------------------------

@pytest.mark.slow
def test_gate_exit_codes_junit_and_step_summary(tmp_path):
    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.md"
    proc = probe_cli("gate", "--variants", "psycopg-binary,psycopg2-green", "--max-p99",
                     "0.001", "--repeat", "2", "--junit", str(junit), "--output-dir",
                     str(tmp_path), env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert proc.returncode == 1, proc.stderr
    failed = [line for line in proc.stderr.splitlines() if "gate failed" in line]
    assert len(failed) == 2 and all("max-p99" in line for line in failed)
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == 4 and sum(c.find("failure") is not None for c in cases) == 2
    assert "gevent-probe gate (bench): failed" in summary.read_text()
    (results,) = tmp_path.glob("*/results.json")
    data = json.loads(results.read_text())
    assert all(len(v["repeats"]) == 2 for v in data["variants"]) and data["checks"]
    # the same results, judged again without measuring: a check on a missing variant is an
    # error, a passing set of checks exits 0
    missing = probe_cli("gate", "--results", str(results), "--variants", "psycopg-c")
    assert missing.returncode == 2 and "no results for variant(s) psycopg-c" in missing.stderr
    passing = probe_cli("gate", "--results", str(results), "--max-p99", "1000")
    assert passing.returncode == 0, passing.stderr


@pytest.mark.slow
# One control per verdict (selftest classifies all four; benchmarks/gate_soak.py gates each
# alone 10 times).
@pytest.mark.parametrize("control, verdict", [("partial-block", "hub-blocking"),
                                              ("spin-wait", "busy-wait")])
def test_each_control_gated_alone_fails_with_its_verdict(tmp_path, control, verdict):
    proc = probe_cli("gate", "--variants", control, "--repeat", "1", "--output-dir",
                     str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert f"gevent-probe: gate failed: {control}: verdict: {verdict}" in proc.stderr


@pytest.mark.slow
def test_selftest_proves_the_detectors_here():
    proc = probe_cli("selftest")
    assert proc.returncode == 0, proc.stderr
    assert "selftest passed: 5 variants classified right" in proc.stdout


@pytest.mark.slow
def test_a_baseline_from_a_good_release_fails_a_release_that_blocks(tmp_path, wheel):
    base = tmp_path / "baseline.json"
    proc = probe_cli("gate", "--variants", "psycopg-binary", "--repeat", "1",
                     "--save-baseline", str(base), "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    # The same tool, with psycopg 3.1.13: it picks wait_c under gevent (psycopg #527).
    old = venv_with(tmp_path / "old", str(wheel), "psycopg[binary]==3.1.13",
                    constraints=False)
    proc = subprocess.run([str(old / "bin/gevent-probe"), "gate", "--variants",
                           "psycopg-binary", "--repeat", "1", "--baseline", str(base)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 1, proc.stderr
    line = next(line for line in proc.stderr.splitlines() if "gate failed" in line)
    assert "hub-blocking (psycopg 3.1.13 binary, wait_c)" in line
    assert "the baseline had healthy (psycopg 3.3.8 binary, wait_poll)" in line
    assert "psycopg: 3.3.8 in the baseline, 3.1.13 here" in proc.stdout


def test_a_named_variant_that_could_not_run_fails_instead_of_passing_silently():
    from probe.model import Unavailable

    result = make_run(variants=(), skipped=(Unavailable("psycopg-c", "no gcc", "pip"),))
    outcome = gate.evaluate(result, build("gate", {"variants": "psycopg-c"}))
    assert outcome.exit_code == EXIT_FAILED
    assert outcome.failures == ("psycopg-c: available: could not run here: no gcc "
                                "(install: pip)",)
