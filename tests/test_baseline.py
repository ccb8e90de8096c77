"""A baseline saved run after run keeps the repeats of its latest runs."""

import dataclasses
import json

import pytest

from probe import baseline
from probe.model import Repeat
from tests.conftest import probe_cli
from tests.test_model import make_run


def run(run_id: str, repeats: int = 3, mode: str = "bench"):
    result = make_run(run_id=run_id, mode=mode)
    v = dataclasses.replace(result.variants[0],
                            repeats=tuple(Repeat("healthy", 1.0, {"db": ""}) for _ in
                                          range(repeats)))
    return dataclasses.replace(result, variants=(v,))


def test_each_save_adds_a_run_and_the_oldest_go_beyond_the_limit(tmp_path):
    path = tmp_path / "baseline.json"
    for n in range(1, 5):
        note = baseline.save(run(f"bench-{n}"), path, runs=3)
        assert f"{min(n, 3)} run(s)" in note
    saved = json.loads(path.read_text())
    repeats = saved["variants"][0]["repeats"]
    assert [r["run_id"] for r in repeats] == ["bench-2"] * 3 + ["bench-3"] * 3 + ["bench-4"] * 3
    assert saved["run_id"] == "bench-4"  # verdicts and the rest: the newest run


def test_runs_1_replaces_and_another_mode_starts_again(tmp_path):
    path = tmp_path / "baseline.json"
    baseline.save(run("bench-1"), path, runs=5)
    baseline.save(run("bench-2"), path, runs=1)
    assert {r["run_id"] for r in json.loads(path.read_text())["variants"][0]["repeats"]} \
        == {"bench-2"}
    baseline.save(run("run-3", mode="run"), path, runs=5)
    assert {r["run_id"] for r in json.loads(path.read_text())["variants"][0]["repeats"]} \
        == {"run-3"}


def test_a_baseline_written_before_runs_were_kept_counts_as_one_run():
    old = make_run(run_id="bench-0")  # its repeats carry no run
    merged = baseline.merged(run("bench-1"), old, runs=5)
    assert baseline.runs_of(merged.variants[0].repeats) == ["bench-0", "bench-1"]


@pytest.mark.slow
def test_a_gate_against_a_baseline_of_three_runs_uses_the_noise_between_them(tmp_path):
    base = tmp_path / "baseline.json"
    common = ["--variants", "psycopg-binary", "--repeat", "1", "--output-dir", str(tmp_path)]
    for n in range(1, 4):
        proc = probe_cli("gate", *common, "--save-baseline", str(base))
        assert proc.returncode in (0, 1), proc.stderr  # saved whatever the verdict
        assert f"baseline {base}: {n} run(s)" in proc.stdout
    out = tmp_path / "gate.json"
    proc = probe_cli("gate", *common, "--baseline", str(base), "--json", str(out))
    assert proc.returncode in (0, 1), proc.stderr
    (check,) = [c for c in json.loads(out.read_text())["checks"]
                if c["check"].startswith("p99-ratio")]
    assert "against 3 runs of the baseline" in check["detail"], check["detail"]
