"""What a recording writes: the results first and whole, the reports after them."""

import json

from probe import recording
from tests.test_model import make_run


def test_a_report_that_fails_costs_the_report_never_the_results(tmp_path, monkeypatch):
    def broken(results, folder):
        raise RuntimeError("a bug of ours in the report")

    monkeypatch.setattr("probe.report.write_reports", broken)
    path = tmp_path / "results.json"
    warning = recording.write_all(make_run(), path)
    assert warning is not None and "RuntimeError: a bug of ours in the report" in warning
    assert json.loads(path.read_text())["variants"]  # written before the reports, and whole


def test_the_reports_are_written_beside_the_results_even_with_no_latency(tmp_path):
    # Every variant failed before it recorded a latency (empty histograms): no latency plot,
    # still both reports (the plot's empty legend used to fail report.html).
    path = tmp_path / "results.json"
    assert recording.write_all(make_run(), path) is None
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.html").is_file()
