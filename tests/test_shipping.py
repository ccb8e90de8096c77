"""What ships beside the code: the Dockerfile and the GitHub Actions example, linted."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is a dev dependency (scripts/install --dev)"
    return found


def test_the_dockerfile_passes_hadolint():
    proc = subprocess.run([tool("hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "scripts/install" in text and "\nUSER " in text  # one install path, not root


def check_workflow(path: Path) -> str:
    """The workflow schema and zizmor's audit (pinned actions, least permissions, no
    injection, no persisted credentials); the text, for the test's own checks."""
    schema = subprocess.run([tool("check-jsonschema"), "--builtin-schema",
                             "vendor.github-workflows", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    audit = subprocess.run([tool("zizmor"), "--offline", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    text = path.read_text()
    uses = re.findall(r"uses: (\S+)", text)
    assert uses and all(re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", u) for u in uses), uses
    return text


def test_the_github_actions_example_is_a_valid_and_safe_workflow():
    text = check_workflow(ROOT / "examples" / "github-actions.yml")
    assert "--dsn" in text or "GEVENT_PROBE_DSN" in text
    assert "upload-artifact" in text and "reports/" in text


def test_the_release_workflow_builds_tests_the_wheel_and_publishes_by_trusted_publishing():
    text = check_workflow(ROOT / ".github" / "workflows" / "release.yml")
    assert 'tags: ["v*"]' in text and "twine check" in text
    assert all(f'"{v}"' in text for v in PYTHONS)  # every Python the project claims
    assert "id-token: write" in text and "password" not in text and "secrets." not in text


PYTHONS = ("3.11", "3.12", "3.13")


def test_every_claimed_python_is_in_the_metadata_and_the_readme():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    claimed = {c.rsplit(" :: ", 1)[1] for c in meta["classifiers"]
               if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    assert claimed == set(PYTHONS) and meta["requires-python"] == ">=3.11"
    readme = (ROOT / "README.md").read_text()
    assert "Python 3.11, 3.12 and 3.13" in readme


def test_no_file_tells_users_to_install_a_name_nobody_published(tmp_path):
    # The name is not on PyPI (yet): a bare `pip install gevent-probe` would fail, or install
    # whoever registers the name first. Install lines name a wheel, a path or a pinned git ref.
    bare = re.compile(r"pip install[^#\n]*\bgevent-probe\b(?!\s*@|[\w.-]*\.whl|\[)")
    for path in [ROOT / "README.md", ROOT / "CHANGELOG.md", *ROOT.glob("examples/*"),
                 *ROOT.glob(".github/workflows/*")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            assert not bare.search(line), f"{path.name}:{n}: {line}"
