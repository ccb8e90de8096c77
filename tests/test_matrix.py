"""The version matrix: versions, transitions, bisection; and two real releases, for real."""

import json
import time

import pytest

from probe import matrix
from probe.errors import ProbeError
from probe.model import VersionResult
from tests.conftest import probe_cli
from tests.test_gate import variant


def version(v: str, verdict: str) -> VersionResult:
    return VersionResult(version=v, variants=(variant("psycopg-binary", verdict),))


def test_a_comma_list_is_taken_as_given_and_sorted():
    assert matrix.expand("3.3.8, 3.1.12,3.1.14", "psycopg") == ["3.1.12", "3.1.14", "3.3.8"]
    with pytest.raises(ProbeError, match="not a version"):
        matrix.expand("3.1.x", "psycopg")
    with pytest.raises(ProbeError, match="give a comma list"):
        matrix.expand(" , ", "psycopg")


def test_transitions_are_between_consecutive_tested_versions():
    tested = (version("3.1.12", "hub-blocking"), version("3.1.13", "hub-blocking"),
              VersionResult(version="3.1.13.1", unavailable="cannot be installed here"),
              version("3.1.14", "healthy"), version("3.3.8", "healthy"))
    (t,) = matrix.transitions(tested)
    assert (t.variant, t.from_version, t.to_version, t.from_verdict, t.to_verdict) == (
        "psycopg-binary", "3.1.13", "3.1.14", "hub-blocking", "healthy")


def test_bisect_finds_both_edges_of_a_window_with_fewer_installs():
    versions = [f"3.1.{i}" for i in range(0, 21)]
    blocking = {f"3.1.{i}" for i in range(5, 14)}  # 3.1.5 .. 3.1.13, as psycopg #527 was
    seen = []

    def measure(v: str) -> VersionResult:
        seen.append(v)
        return version(v, "hub-blocking" if v in blocking else "healthy")

    matrix._bisect(versions, measure, ["psycopg-binary"])
    tested = tuple(measure(v) for v in versions if v in seen)
    edges = {(t.from_version, t.to_version) for t in matrix.transitions(tested)}
    assert edges == {("3.1.4", "3.1.5"), ("3.1.13", "3.1.14")}
    assert len(set(seen)) < len(versions)


def test_the_measured_process_sees_only_the_probe_package_from_the_tool():
    shim = matrix.shim()
    assert [p.name for p in shim.iterdir()] == ["probe"]
    reqs = matrix.requirements("psycopg", "3.1.13", "psycopg-binary")
    assert "psycopg[binary]==3.1.13" in reqs and any(r.startswith("gevent==") for r in reqs)
    assert not any(r.startswith("psycopg2") for r in reqs)


@pytest.mark.slow
def test_matrix_on_two_real_releases_finds_the_fix_and_reuses_its_environments(tmp_path,
                                                                                 monkeypatch):
    cache = tmp_path / "cache"
    env = {"GEVENT_PROBE_CACHE": str(cache)}
    out = tmp_path / "m.json"
    args = ("matrix", "--package", "psycopg", "--versions", "3.1.13,3.1.14", "--variants",
            "psycopg-binary", "--queries", "100", "--json", str(out))
    t0 = time.monotonic()
    first = probe_cli(*args, env=env)
    first_s = time.monotonic() - t0
    assert first.returncode == 0, first.stderr
    data = json.loads(out.read_text())
    assert data["mode"] == "matrix" and data["package"] == "psycopg"
    verdicts = {v["version"]: v["variants"][0]["verdict"] for v in data["versions"]}
    assert verdicts == {"3.1.13": "hub-blocking", "3.1.14": "healthy"}
    waits = {v["version"]: v["variants"][0]["measured"]["runtime"]["wait_function"]
             for v in data["versions"]}
    assert waits == {"3.1.13": "wait_c", "3.1.14": "wait_poll"}
    assert data["transitions"] == [{"variant": "psycopg-binary", "from_version": "3.1.13",
                                    "to_version": "3.1.14", "from_verdict": "hub-blocking",
                                    "to_verdict": "healthy"}]
    assert len(list(cache.glob("envs/psycopg-*"))) == 2
    t0 = time.monotonic()
    second = probe_cli(*args, env=env)
    assert second.returncode == 0, second.stderr
    print(f"first run {first_s:.1f} s, second {time.monotonic() - t0:.1f} s")


@pytest.mark.slow
def test_a_version_that_cannot_be_installed_is_reported_not_a_crash(tmp_path):
    out = tmp_path / "m.json"
    proc = probe_cli("matrix", "--package", "psycopg", "--versions", "3.1.14,99.0.0",
                     "--variants", "psycopg-binary", "--queries", "100", "--json", str(out),
                     env={"GEVENT_PROBE_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    (missing,) = [v for v in data["versions"] if v["version"] == "99.0.0"]
    assert "cannot be installed" in missing["unavailable"]
