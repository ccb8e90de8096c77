"""results.json: where a run's folder goes, and writing and reading it safely.

Writes are atomic (a temp file, then a rename), so a run that is interrupted or killed always
leaves a valid results.json with what it had measured. Run ids carry a random suffix and
their folder is created exclusively, so two runs in the same second never collide.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.model import MatrixResult, RunResult, from_dict, to_dict


def new_run_id(mode: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{mode}-{stamp}-{secrets.token_hex(2)}"


def prepare(output_dir: Path, json_path: Path | None, mode: str) -> tuple[str, Path]:
    """(run id, where results.json goes): reports/<run-id>/results.json, or --json FILE with
    the reports beside it. Checked now, so that an unwritable output fails in the first
    second, not after minutes of measuring."""
    if json_path is not None:
        check_writable(json_path)
        return new_run_id(mode), json_path
    run_id, folder = new_run_dir(output_dir, mode)
    return run_id, folder / "results.json"


@contextlib.contextmanager
def removed_if_unused(folder: Path) -> Iterator[None]:
    """Remove the run's folder again if the run failed before writing anything into it."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty
        raise


def new_run_dir(output_dir: Path, mode: str) -> tuple[str, Path]:
    """A fresh reports/<run-id>/ folder, created exclusively: ids never collide."""
    for _ in range(20):
        run_id = new_run_id(mode)
        folder = output_dir / run_id
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as ex:
            raise ProbeError(f"cannot create {folder}: {ex.strerror}") from None
        return run_id, folder
    raise ProbeError(f"cannot find a free run id under {output_dir}")


def check_writable(path: Path) -> None:
    """Fail now, not after measuring, if `path` cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".gevent-probe-", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as ex:
        raise ProbeError(f"cannot write {path}: {ex.strerror or ex}") from None


def write_text(path: Path, text: str) -> Path:
    """Write atomically: readers see the old file or the new one, never half of one."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 is for the temp file, not the result
        os.replace(tmp, path)
    except OSError as ex:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise ProbeError(f"cannot write {path}: {ex.strerror or ex}") from None
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write(result: RunResult | MatrixResult, path: Path) -> Path:
    return write_text(path, json.dumps(to_dict(result), indent=1) + "\n")


def read(path: Path) -> RunResult | MatrixResult:
    try:
        data = json.loads(path.read_text())
        cls: Any = MatrixResult if data.get("mode") == "matrix" else RunResult
        result: RunResult | MatrixResult = from_dict(cls, data)
        return result
    except OSError as ex:
        raise ProbeError(f"cannot read {path}: {ex.strerror}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as ex:
        raise ProbeError(f"{path} is not a gevent-probe results file: {ex}") from None
