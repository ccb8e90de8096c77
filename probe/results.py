"""results.json: write and read the versioned result of a run."""

from __future__ import annotations

import json
from pathlib import Path

from probe.errors import ProbeError
from probe.model import RunResult, from_dict, to_dict


def default_path(output_dir: Path, run: RunResult) -> Path:
    return output_dir / run.run_id / "results.json"


def write(run: RunResult, path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(to_dict(run), indent=2) + "\n")
    except OSError as ex:
        raise ProbeError(f"cannot write {path}: {ex.strerror}") from None
    return path


def read(path: Path) -> RunResult:
    try:
        data = json.loads(path.read_text())
        return from_dict(RunResult, data)
    except OSError as ex:
        raise ProbeError(f"cannot read {path}: {ex.strerror}") from None
    except (ValueError, TypeError, KeyError) as ex:
        raise ProbeError(f"{path} is not a gevent-probe results file: {ex}") from None
