from pathlib import Path

import pytest

from probe import config
from probe.errors import ProbeError


def test_flags_override_file_override_defaults(tmp_path: Path):
    path = tmp_path / "probe.toml"
    path.write_text('[bench]\nconcurrency = 32\nrounds = 5\n')
    built = config.build(config.BenchConfig, config.load_table(path, "bench"),
                         {"rounds": 2, "queries": None})
    assert (built.concurrency, built.rounds, built.queries) == (32, 2, 300)


def test_dsn_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(config.DSN_ENV, "host=db")
    assert config.build(config.BenchConfig, {}, {}).dsn == "host=db"


@pytest.mark.parametrize("content, message", [
    ("[bench]\nconcurency = 3\n", "unknown setting 'concurency'"),
    ("[bench\n", "invalid TOML"),
])
def test_bad_files_are_one_clear_error(tmp_path: Path, content: str, message: str):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ProbeError, match=message):
        config.build(config.BenchConfig, config.load_table(path, "bench"), {})


@pytest.mark.parametrize("field, value", [("concurrency", 0), ("rounds", -1),
                                          ("sleep_ms", "fast"), ("block_threshold_ms", 1)])
def test_validation(field: str, value: object):
    with pytest.raises(ProbeError):
        config.BenchConfig(**{field: value}).validate()
