import json
from pathlib import Path

import pytest

from probe import gate, report, results
from probe.errors import ProbeError
from probe.settings import build
from tests.test_model import make_run


def test_two_runs_in_the_same_second_never_collide(tmp_path):
    ids = {results.new_run_dir(tmp_path, "bench")[0] for _ in range(30)}
    assert len(ids) == 30


def test_writes_are_atomic_and_readable_back(tmp_path):
    path = tmp_path / "r" / "results.json"
    results.write(make_run(complete=False), path)
    results.write(make_run(), path)
    assert json.loads(path.read_text())["complete"] is True
    assert results.read(path) == make_run()
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left


def test_an_unwritable_output_fails_before_measuring():
    with pytest.raises(ProbeError, match=r"cannot write /proc/x/r\.json"):
        results.check_writable(__import__("pathlib").Path("/proc/x/r.json"))


def test_a_file_that_is_not_ours_is_refused(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"schema": "something/1"}')
    with pytest.raises(ProbeError, match="not a gevent-probe results file"):
        results.read(bad)
    newer = tmp_path / "newer.json"
    newer.write_text('{"schema": "gevent-probe/99", "mode": "bench"}')
    with pytest.raises(ProbeError, match="its schema is 'gevent-probe/99'; this release reads "
                                         "gevent-probe/2 and gevent-probe/3"):
        results.read(newer)


SCHEMA2 = Path(__file__).parent / "data" / "schema2"


@pytest.mark.parametrize("name", sorted(p.name for p in SCHEMA2.glob("*.json")))
def test_files_written_by_schema_2_are_read_and_rendered(name):
    result = results.read(SCHEMA2 / name)
    assert result.schema == "gevent-probe/2" and result.variants
    assert "<html" in report.render_html([result])
    assert result.run_id in report.render_markdown([result])


def test_a_schema_2_baseline_still_gates_todays_results():
    baseline = results.read(SCHEMA2 / "baseline-bench.json")
    now = results.read(Path(__file__).parent / "data" / "bench-10-variants.json")
    outcome = gate.evaluate(now, build("gate", {"variants": "psycopg-binary,psycopg2-green"}),
                            baseline)
    ratios = [c for c in outcome.result.checks if c.check == "p99-ratio"]
    assert len(ratios) == 2 and all(c.value for c in ratios)
    assert outcome.exit_code in (0, 1)  # judged, not refused
