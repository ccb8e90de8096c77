from pathlib import Path

import pytest

from probe.errors import ProbeError
from probe.settings import build


def write(tmp_path: Path, text: str, name: str = "probe.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_flags_win_over_the_file_which_wins_over_defaults(tmp_path):
    config = write(tmp_path, 'concurrency = 8\nsleep-ms = 20\n[bench]\nconcurrency = 12\n')
    settings = build("bench", {"sleep_ms": 30.0}, config)
    assert (settings.concurrency, settings.sleep_ms, settings.rounds) == (12, 30.0, 3)


def test_pyproject_table_is_found_without_flags(tmp_path, monkeypatch):
    write(tmp_path, '[project]\nname = "app"\n[tool.gevent-probe]\nvariants = "psycopg2"\n'
                    '[tool.gevent-probe.gate]\nmax-p99 = 25\n', name="pyproject.toml")
    monkeypatch.chdir(tmp_path)
    assert build("bench", {}).variants == "psycopg2"
    assert build("gate", {}).max_p99 == "25"
    monkeypatch.chdir(tmp_path.parent)  # no pyproject.toml here: defaults
    assert build("bench", {}).variants is None


@pytest.mark.parametrize("text, message", [
    ('concurrency = "many"', "concurrency in {} must be a whole number, got 'many'"),
    ("output_dir = 5", "output_dir in {} must be text, got 5"),
    ("sleep-ms = true", "sleep-ms in {} must be a number"),
    ('duration = "ten"', "duration in {} must be a number, got 'ten'"),
    ("variants = [1, 2]", "variants in {} must be a list of names"),
    ("colour = 1", "unknown setting 'colour' in {}"),
    ("[bench]\nduration = 1e12", "duration in {} is capped at 3600"),
    ("bench = 3", "[bench] in {}"),
])
def test_a_wrong_config_is_one_clear_error_naming_the_key_and_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ProbeError) as info:
        build("bench", {}, path)
    assert message.format(path) in str(info.value) and "\n" not in str(info.value)


def test_the_key_and_the_table_of_pyproject_are_named(tmp_path, monkeypatch):
    write(tmp_path, '[tool.gevent-probe]\nduration = "ten"\n', name="pyproject.toml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProbeError, match=r"duration in pyproject.toml \[tool.gevent-probe\] "
                                         "must be a number, got 'ten'"):
        build("bench", {})


def test_toml_lists_and_tables_where_a_flag_takes_a_comma_list(tmp_path):
    path = write(tmp_path, 'variants = ["psycopg-binary", "psycopg2-green"]\n[gate]\n'
                           'fail-on = ["hub-blocking", "regressed"]\n'
                           'max-p99 = {select1 = 25, sleep = 150}\n')
    assert build("bench", {}, path).variants == "psycopg-binary,psycopg2-green"
    gate = build("gate", {"mode": "run"}, path)
    assert gate.fail_on == "hub-blocking,regressed"
    assert gate.max_p99 == "select1=25,sleep=150"
    # a flag still wins, and is named as a flag when wrong
    assert build("bench", {"variants": "psycopg2"}, path).variants == "psycopg2"
    with pytest.raises(ProbeError, match="--duration must be a number"):
        build("bench", {"duration": "x"}, path)


def test_every_run_stays_bounded():
    with pytest.raises(ProbeError, match="capped at 3600"):
        build("bench", {"duration": 1e12})
    with pytest.raises(ProbeError, match="at least 2"):
        build("bench", {"block_threshold_ms": 1.0})
    with pytest.raises(ProbeError, match="capped at 200"):
        build("bench", {"concurrency": 5000})
    with pytest.raises(ProbeError, match="more than the embedded server's 280"):
        build("run", {"workers": 16})
    assert build("run", {"workers": 16, "dsn": "host=db"}).workers == 16
    assert build("run", {}).load_s == 10.0 and build("bench", {}).load_s is None


def test_gate_repeats_three_times_by_default_and_bench_once():
    assert build("gate", {}).repeats == 3 and build("bench", {}).repeats == 1
    assert build("gate", {"mode": "run"}).measuring_mode == "run"


def test_the_reproducing_command_never_shows_a_password():
    settings = build("bench", {"variants": "psycopg2", "concurrency": 8,
                               "dsn": "postgresql://app:hunter2@db/x"})
    line = settings.command_line()
    assert line.startswith("gevent-probe bench --variants psycopg2")
    assert "--concurrency 8" in line and "hunter2" not in line
    assert "hunter2" not in str(settings.public())


@pytest.mark.parametrize("value, message", [
    ("abc", "--max-p99 must be MS or ROUTE=MS"),
    ("select1=x", "--max-p99 must be MS or ROUTE=MS"),
    ("-3", "must be a number of ms, 0 or more"),
])
def test_gate_limits_are_checked_before_anything_runs(value, message):
    with pytest.raises(ProbeError, match=message):
        build("gate", {"max_p99": value})
    assert build("gate", {"max_p99": "select1=25,sleep=120", "mode": "run"}).max_p99


def test_a_gate_that_could_only_fail_after_measuring_fails_before():
    with pytest.raises(ProbeError, match="bench has no routes"):
        build("gate", {"max_p99": "select1=25"})
    with pytest.raises(ProbeError, match="compares with psycopg2-green: add it"):
        build("gate", {"variants": "psycopg-binary", "max_p99_ratio": 1.5})
    assert build("gate", {"variants": "psycopg-binary,psycopg2-green", "max_p99_ratio": 1.5})


def test_fail_on_names_known_verdicts_only():
    with pytest.raises(ProbeError, match="unknown verdict"):
        build("gate", {"fail_on": "hub-blocking,slow"})


def test_a_gate_table_that_is_not_a_table_is_one_line(tmp_path):
    with pytest.raises(ProbeError, match=r"\[gate\] in .* must be a table"):
        build("gate", {}, write(tmp_path, "gate = 3"))


def test_list_flags_are_parsed_once_into_typed_values():
    s = build("gate", {"variants": " psycopg-binary,, psycopg2-green ",
                       "fail_on": "hub-blocking, regressed"})
    assert s.variant_names == ("psycopg-binary", "psycopg2-green")
    assert s.fail_on_verdicts == frozenset({"hub-blocking", "regressed"})
    assert build("gate", {"variants": "all"}).variant_names == ()


@pytest.mark.parametrize("flags, message", [
    ({"target": "10.0.0.2:8000"}, "--target must look like http://HOST:PORT"),
    ({"target": "http://u:secret@app:8000"}, "--target takes no credentials"),
    ({"target": "http://app:8000", "variants": "psycopg2"}, "--variants does not apply"),
    ({"target": "http://app:8000", "app": "shop:app"}, "--app does not apply"),
    ({"expect_workers": 2}, "--expect-workers needs --locust-master-bind"),
    ({"expect_workers": 2, "locust_master_bind": "10.0.0.1:x"}, "must be HOST or HOST:PORT"),
    ({"expect_workers": 2, "locust_master_bind": "10.0.0.1:5557", "locust_processes": 2},
     "give one"),
])
def test_remote_settings_that_cannot_work_are_one_line_before_anything_starts(
        monkeypatch, flags, message):
    monkeypatch.setenv("GEVENT_PROBE_AGENT_TOKEN", "s3cret")
    with pytest.raises(ProbeError, match=message):
        build("run", flags)


def test_a_target_needs_the_agents_token_and_never_records_it(monkeypatch):
    monkeypatch.delenv("GEVENT_PROBE_AGENT_TOKEN", raising=False)
    with pytest.raises(ProbeError, match="GEVENT_PROBE_AGENT_TOKEN"):
        build("run", {"target": "http://app:8000"})
    monkeypatch.setenv("GEVENT_PROBE_AGENT_TOKEN", "s3cret")
    settings = build("run", {"target": "http://app:8000", "workers": 64, "pool_size": 100})
    assert "s3cret" not in settings.command_line() + str(settings.public())
    remote = build("run", {"expect_workers": 3, "locust_master_bind": "10.0.0.1"})
    assert remote.load_processes == 3
