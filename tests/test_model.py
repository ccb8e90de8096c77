import dataclasses
import json

import pytest

from probe import stats, variant_loop
from probe.model import SCHEMA, Repeat, RunResult, Unavailable, VariantResult, from_dict, to_dict
from tests.factories import contention, held, measurement, slices


def make_run(**kw) -> RunResult:
    result = VariantResult(name="psycopg-binary", control=False, expected=None,
                           verdict="healthy", evidence=("a sentence",), fix=None,
                           measured=measurement(contention=contention(0.1),
                                                slices=slices(longest=(held(12.0, "blocked"),))),
                           repeats=(Repeat("healthy", 1.05, {"db": ""}),))
    fields = dict(run_id="bench-1", mode="bench", command="gevent-probe bench",
                  started="2026-11-25T10:00:00+00:00", duration_s=1.0, complete=True,
                  environment={"python": "3.11"}, settings={"concurrency": 16},
                  variants=(result,), skipped=(Unavailable("psycopg-c", "no", "pip"),))
    fields.update(kw)
    return RunResult(**fields)


def test_run_result_round_trips_through_json():
    run = make_run()
    data = json.loads(json.dumps(to_dict(run)))
    assert data["schema"] == SCHEMA == "gevent-probe/3"
    assert data["variants"][0]["measured"]["db"]["latency_ms"]["p99"] == pytest.approx(1.2)
    assert from_dict(RunResult, data) == run


def test_unknown_schema_is_refused():
    with pytest.raises(ValueError, match="schema"):
        from_dict(RunResult, {"schema": "gevent-probe/1"})


def test_a_run_is_trusted_only_with_its_controls_right_and_complete():
    assert make_run().trusted
    assert not make_run(control_problems=("spin-wait gave healthy",)).trusted
    assert not make_run(aborted="PostgreSQL stopped").trusted


def test_scrubbing_a_password_leaves_the_histograms_intact():
    hist = stats.new_histogram()
    for v in range(1, 3000, 7):
        hist.record_value(v)
    encoded = stats.encode(hist)
    password = next(encoded[i:i + 2] for i in range(len(encoded)) if encoded[i:i + 2].isalpha())
    run = make_run(command=f"gevent-probe bench --dsn 'password={password}'")
    (variant,) = run.variants
    measured = dataclasses.replace(variant.measured, histograms={"db": encoded})
    run = dataclasses.replace(run, variants=(dataclasses.replace(variant, measured=measured),))
    scrubbed = variant_loop.scrub(run, f"host=db password={password}")
    assert password not in scrubbed.command
    assert stats.decode(scrubbed.variants[0].measured.histograms["db"]).get_total_count() == \
        hist.get_total_count()

