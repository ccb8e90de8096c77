"""Spawn a measured process, hand it a job on stdin, read its JSON report from a pipe.

The pyperf pattern: stdout/stderr stay for humans and tracebacks, data travel on a dedicated
pipe. Each process starts in its own session so that a stuck one can be killed with all
its children, and it is always reaped before we return.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from probe.lifecycle import stop_group
from probe.messages import WorkerJob, WorkerReply
from probe.model import from_dict, to_dict


class WorkerFailed(Exception):
    """The measured process died, hung or sent no report; the message is one line."""


def run_worker(module: str, job: WorkerJob, env: Mapping[str, str],
               timeout_s: float, python: str | None = None,
               stuck: Callable[[WorkerReply], WorkerReply] | None = None,
               ) -> WorkerReply:
    """Run `python -m module` (this interpreter by default; another environment's for the
    version matrix), send it `job`, and return its reply. A worker that sends its reply and
    does not exit is stuck (a deadlocked one replies from its watchdog thread): `stuck` gets
    the reply first, while the process still holds what it holds (locks on the server), and
    returns it completed; then the worker is killed."""
    read_fd, write_fd = os.pipe()
    full_env = {**os.environ, **env}
    # -P: the folder the user runs from stays off sys.path (a `probe` there, or a checkout's
    # sources, must not stand in for the installed tool).
    try:
        proc = subprocess.Popen(
            [python or sys.executable, "-P", "-m", module, "--pipe", str(write_fd)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(write_fd,), env=full_env, start_new_session=True,
        )
    except OSError as ex:  # e.g. a matrix environment's interpreter is gone
        os.close(read_fd)
        raise WorkerFailed(f"cannot start {python or sys.executable}: {ex.strerror}") from None
    finally:
        os.close(write_fd)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(read_fd, chunks), daemon=True)
    errors: list[bytes] = []
    err_reader = threading.Thread(target=_drain_file, args=(proc.stderr, errors), daemon=True)
    reader.start()
    err_reader.start()
    completed: WorkerReply | None = None
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(to_dict(job)).encode())
        proc.stdin.close()
        completed = _wait(proc, reader, chunks, timeout_s, stuck)
    except subprocess.TimeoutExpired:
        raise WorkerFailed(f"no report after {timeout_s:.0f} s; the worker was killed") from None
    except BrokenPipeError:
        pass
    finally:
        stop_group(proc, timeout=2)
        reader.join(timeout=5)
        err_reader.join(timeout=5)
    if completed is not None:
        return completed
    raw = b"".join(chunks)
    if proc.returncode != 0 or not raw:
        tail = b"".join(errors).decode(errors="replace").strip().splitlines()
        last = tail[-1] if tail else "no output"
        raise WorkerFailed(f"worker exited with code {proc.returncode}: {last}")
    return _reply(raw)


def _reply(raw: bytes) -> WorkerReply:
    try:
        return from_dict(WorkerReply, json.loads(raw))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise WorkerFailed("the worker's reply was not valid JSON of its kind") from None


STUCK_GRACE_S = 1.0  # a worker that replied exits within this; one that does not is stuck


def _wait(proc: subprocess.Popen[bytes], reader: threading.Thread, chunks: list[bytes],
          timeout_s: float, stuck: Callable[[WorkerReply], WorkerReply] | None,
          ) -> WorkerReply | None:
    """Until the worker exits (None: read its reply as usual), or until it has replied and
    stays (its reply, completed by `stuck`)."""
    deadline = time.monotonic() + timeout_s
    replied_at: float | None = None
    while True:
        try:
            proc.wait(timeout=0.1)
            return None
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if now > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        if replied_at is None and not reader.is_alive():
            replied_at = now
        if replied_at is not None and now - replied_at > STUCK_GRACE_S and stuck is not None:
            try:
                reply = _reply(b"".join(chunks))
            except WorkerFailed:
                return None
            return stuck(reply)


def _drain(fd: int, chunks: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)


def _drain_file(stream: Any, chunks: list[bytes]) -> None:
    while chunk := stream.read(65536):
        chunks.append(chunk)
