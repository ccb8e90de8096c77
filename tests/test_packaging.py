"""The tool as users get it: a wheel in a fresh venv, run from anywhere, on any app layout."""

import json
import os
import subprocess
import sys
import sysconfig
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
    # One wheel per platform for every Python from 3.11 (the C hot path is built against the
    # stable ABI: probe/_switch_clock.c), and the sdist.
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    assert built == [f"gevent_probe-{version}-cp311-abi3-{platform}.whl",
                     f"gevent_probe-{version}.tar.gz"]
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
                    "probe/locustfiles/hdr.py", "probe/_switch_clock.abi3.so"):
        assert shipped in names


def test_the_installed_wheel_runs_the_compiled_hot_path(installed):
    shown = subprocess.run([str(installed / "bin/python"), "-c",
                            "from probe.switch_clock import IMPLEMENTATION; print(IMPLEMENTATION)"],
                           capture_output=True, text=True, timeout=60, cwd="/")
    assert shown.stdout.strip() == "C", shown.stderr


def test_without_a_c_compiler_the_sdist_installs_and_runs_the_python_hot_path(tmp_path):
    # The extension is optional: where nothing can compile it, pip builds the rest.
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--outdir",
                    str(dist), str(ROOT)], check=True, capture_output=True, timeout=300)
    (sdist,) = dist.glob("gevent_probe-*.tar.gz")
    env = {**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"}
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python",
                    str(venv / "bin/python"), "--no-deps", str(sdist)],
                   check=True, timeout=300, env=env)
    site = subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert not list(Path(site, "probe").glob("_switch_clock*.so"))
    # probe.switch_clock imports nothing beyond the standard library: no dependencies needed
    shown = subprocess.run([str(venv / "bin/python"), "-c",
                            "from probe.switch_clock import IMPLEMENTATION; print(IMPLEMENTATION)"],
                           capture_output=True, text=True, timeout=60, cwd="/")
    assert shown.stdout.strip() == "Python", shown.stderr


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
