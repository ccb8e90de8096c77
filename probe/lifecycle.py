"""Process lifetime helpers: nothing we start may outlive us."""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to signal this process when its parent dies (even by SIGKILL).

    Safe in a preexec_fn: it only calls prctl. A no-op where prctl is missing.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop a process started with start_new_session=True and everything in its group."""
    if proc.poll() is None:
        _signal_group(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # Whatever the leader did, its group (gunicorn workers, locust workers) goes too.
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# Folders the tool makes in the temporary directory, each with the pid of the run that owns
# it: a run killed by SIGKILL cannot remove its own, so the next run does.
TEMP_PREFIXES = ("gevent-probe-pg-", "gevent-probe-auth-", "gevent-probe-run-")
OWNER_FILE = "owner.pid"


def mark_owned(folder: Path) -> None:
    (Path(folder) / OWNER_FILE).write_text(str(os.getpid()))


def sweep_stale() -> None:
    """Remove the tool's temporary folders whose owner process is gone."""
    for prefix in TEMP_PREFIXES:
        for folder in glob.glob(os.path.join(tempfile.gettempdir(), prefix + "*")):
            try:
                owner = int(Path(folder, OWNER_FILE).read_text())
            except (OSError, ValueError):
                continue
            if not _alive(owner):
                shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
