"""Process lifetime helpers: nothing we start may outlive us."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to signal this process when its parent dies (even by SIGKILL).

    Safe in a preexec_fn: it only calls prctl. A no-op where prctl is missing.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def stop_group(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
               timeout: float = 10.0) -> None:
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


# Folders the tool makes in the temporary directory. Each holds a lock its run keeps while it
# lives: a run killed by SIGKILL cannot remove its folders, but the kernel drops its lock, so
# the next run can tell they are stale. A lock, not a pid: a pid can be reused, and a run in
# another pid namespace (a container sharing /tmp) cannot be seen by its pid.
TEMP_PREFIXES = ("gevent-probe-pg-", "gevent-probe-auth-", "gevent-probe-run-",
                 "gevent-probe-load-worker-")
OWNER_FILE = "owner.pid"
_held: dict[str, int] = {}  # folder -> the fd that holds its lock


def owned_tempdir(prefix: str) -> Path:
    """A new private folder (mode 0700) in the temporary directory, locked by this run."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    fd = os.open(folder / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, str(os.getpid()).encode())  # for a human who finds it
    _held[str(folder)] = fd
    return folder


def remove_owned(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    fd = _held.pop(str(folder), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def owned_scratch(prefix: str) -> Iterator[Path]:
    folder = owned_tempdir(prefix)
    try:
        yield folder
    finally:
        remove_owned(folder)


def sweep_stale() -> None:
    """Remove the tool's temporary folders whose run is gone (nobody holds their lock)."""
    for prefix in TEMP_PREFIXES:
        for folder in glob.glob(os.path.join(tempfile.gettempdir(), prefix + "*")):
            if _abandoned(Path(folder)):
                shutil.rmtree(folder, ignore_errors=True)


def _abandoned(folder: Path) -> bool:
    try:
        fd = os.open(folder / OWNER_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # not ours to judge, or still being made
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: its run holds it
        return False
    finally:
        os.close(fd)
    return True
