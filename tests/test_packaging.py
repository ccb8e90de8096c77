"""The tool as users get it: a wheel in a fresh venv, run from anywhere, on any app layout."""

import json
import os
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, venv_with

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel) -> Path:
    """A fresh venv with the wheel (not editable), as `pip install gevent-probe` gives."""
    return venv_with(tmp_path_factory.mktemp("venv") / "v", str(wheel))


def test_a_release_builds_passes_twine_and_names_its_one_version(tmp_path, installed):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    built = sorted(p.name for p in dist.iterdir())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert built == [f"gevent_probe-{version}-py3-none-any.whl", f"gevent_probe-{version}.tar.gz"]
    twine = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                            *map(str, dist.iterdir())], capture_output=True, text=True,
                           timeout=120)
    assert twine.returncode == 0, twine.stdout + twine.stderr
    shown = subprocess.run([str(installed / "bin/gevent-probe"), "--version"],
                           capture_output=True, text=True, timeout=60).stdout.strip()
    assert shown == f"gevent-probe {version}"


def test_the_wheel_installs_one_import_name_and_ships_the_apps(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"probe"}
    for shipped in ("probe/apps/gunicorn_conf.py", "probe/apps/probe_app.py",
                    "probe/apps/byo.py", "probe/locustfiles/mixed.py",
                    "probe/locustfiles/hdr.py"):
        assert shipped in names


USER_APP = '''
"""A user's project whose code lives in a package called `apps`, importing psycopg lazily."""
import os

_pool = None


def application(environ, start_response):
    global _pool
    import psycopg_pool  # lazily: safe under gunicorn --preload

    if _pool is None:
        _pool = psycopg_pool.ConnectionPool(os.environ["GEVENT_PROBE_DSN"], min_size=2,
                                            max_size=20, kwargs={"autocommit": True})
    path = environ["PATH_INFO"]
    with _pool.connection() as conn:
        if path == "/sleep":
            conn.execute("SELECT pg_sleep(0.05)")
        else:
            conn.execute("SELECT 1")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


SHADOW = "raise ImportError('a user package shadowed the tool')\n"


def user_project(root: Path) -> Path:
    """A project with packages called apps (the app), probe and locustfiles (traps)."""
    for package in ("apps", "probe", "locustfiles"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("" if package == "apps" else SHADOW)
    (root / "apps" / "web.py").write_text(textwrap.dedent(USER_APP))
    return root


def test_run_with_a_users_package_named_apps_from_a_non_editable_install(installed, tmp_path):
    project = user_project(tmp_path / "project")
    out = tmp_path / "r.json"
    proc = subprocess.run(  # from the project's folder, without --chdir: the default
        [str(installed / "bin/gevent-probe"), "run", "--app", "apps.web:application",
         "--variants", "psycopg-binary,preload", "--duration", "3", "--users", "10",
         "--json", str(out)],
        cwd=project, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    data = json.loads(out.read_text())
    verdicts = {r["name"]: (r["verdict"], r["control"]) for r in data["variants"]}
    # The app imports its driver lazily: safe under --preload, and not a failed control.
    assert verdicts == {"psycopg-binary": ("healthy", False), "preload": ("healthy", False)}
    assert "WARNING" not in proc.stdout and not data["control_problems"]
    assert data["variants"][1]["measured"]["runtime"]["wait_function"] == "wait_poll"


def test_bench_from_a_folder_whose_packages_would_shadow_ours(installed, tmp_path):
    """From a project (or a checkout of this tool) whose `probe` is not the tool; `run` from
    such a folder is the test above (the tool's gunicorn config, agent and locustfiles)."""
    project = user_project(tmp_path / "project")
    proc = subprocess.run(
        [str(installed / "bin/gevent-probe"), "bench", "--variants", "psycopg-binary,wait_c",
         "--queries", "100"], cwd=project, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "controls: wait_c flagged as expected" in proc.stdout
    assert (project / "reports").is_dir()  # reports/ goes where the user runs it
