"""What ships beside the code: the Dockerfile and the GitHub Actions example, linted."""

import shutil
import subprocess
import sys
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


def test_the_github_actions_example_is_a_valid_and_safe_workflow():
    workflow = str(ROOT / "examples" / "github-actions.yml")
    schema = subprocess.run([tool("check-jsonschema"), "--builtin-schema",
                             "vendor.github-workflows", workflow],
                            capture_output=True, text=True, timeout=60)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    audit = subprocess.run([tool("zizmor"), "--offline", workflow], capture_output=True,
                           text=True, timeout=60)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    text = Path(workflow).read_text()
    assert "--dsn" in text or "GEVENT_PROBE_DSN" in text
    assert "upload-artifact" in text and "reports/" in text
