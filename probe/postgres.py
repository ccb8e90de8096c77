"""A throwaway PostgreSQL cluster, started by the tool and always removed.

initdb refuses to run as root, so when we are root the cluster belongs to an unprivileged
user (`postgres` if it exists, else `nobody`). The server listens on 127.0.0.1 and a unix
socket inside the cluster's temp dir, with trust authentication: it exists only for the run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from probe.errors import ProbeError
from probe.lifecycle import die_with_parent

TEMP_PREFIX = "gevent-probe-pg-"
SUPERUSER = "probe"
READY_TIMEOUT_S = 30.0


BINDIR_ENV = "GEVENT_PROBE_PG_BINDIR"


def find_bindir() -> Path:
    """Directory holding initdb and postgres: $GEVENT_PROBE_PG_BINDIR if set, else PATH, then
    pg_config --bindir, then Debian's /usr/lib/postgresql/*/bin (newest first)."""
    forced = os.environ.get(BINDIR_ENV)
    if forced:
        if (Path(forced) / "initdb").is_file() and (Path(forced) / "postgres").is_file():
            return Path(forced)
        raise ProbeError(f"{BINDIR_ENV}={forced} holds no initdb and postgres binaries")
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            candidates.append(Path(out))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates.extend(Path(p) for p in debian)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise ProbeError(
        "no PostgreSQL server binaries found (initdb/postgres on PATH, pg_config --bindir, "
        "/usr/lib/postgresql/*/bin); install them (e.g. apt-get install postgresql) "
        "or pass --dsn"
    )


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ProbeError("running as root and no unprivileged user (postgres, nobody) to run initdb")


class EphemeralCluster:
    """initdb + postgres in a temp dir; `stop()` kills the server and removes the dir."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.user = _unprivileged_user()
        self.tmpdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"

    @property
    def version(self) -> str:
        out = subprocess.run([str(self.bindir / "postgres"), "--version"],
                             capture_output=True, text=True, check=False).stdout
        match = re.search(r"\d+(?:\.\d+)+", out)
        return match.group(0) if match else "unknown"

    def start(self) -> EphemeralCluster:
        self.tmpdir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        if self.user:
            os.chown(self.tmpdir, self.user.pw_uid, self.user.pw_gid)
        data = self.tmpdir / "data"
        self._run(["initdb", "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                   "--locale=C", "--no-sync", "--no-instructions"], "initdb")
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            self._spawn(data)
            if self._wait_ready():
                return self
            self._kill()
        raise ProbeError(f"embedded PostgreSQL did not start: {self._log_tail()}")

    def stop(self) -> None:
        self._kill()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def __enter__(self) -> EphemeralCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _demote(self) -> None:
        # Runs in the child after the uid switch: if we die, even by SIGKILL, so does it.
        die_with_parent(signal.SIGQUIT)

    def _popen_kwargs(self) -> dict:
        kwargs: dict = {"preexec_fn": self._demote, "start_new_session": True}
        if self.user:
            kwargs.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        return kwargs

    def _run(self, argv: list[str], what: str) -> None:
        argv = [str(self.bindir / argv[0]), *argv[1:]]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120,
                              cwd=self.tmpdir, **self._popen_kwargs())
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ProbeError(f"{what} failed: {last[0]}")

    def _spawn(self, data: Path) -> None:
        assert self.tmpdir is not None
        log = open(self.tmpdir / "postgres.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", str(self.tmpdir),
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=300",
                 "-c", "shared_buffers=64MB", "-c", "logging_collector=off"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.tmpdir,
                **self._popen_kwargs(),
            )
        finally:
            log.close()

    def _wait_ready(self) -> bool:
        import psycopg2

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                psycopg2.connect(self.dsn, connect_timeout=2).close()
                return True
            except psycopg2.OperationalError:
                time.sleep(0.05)
        return False

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # SIGQUIT: immediate shutdown; nothing in this cluster is worth a checkpoint.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def _log_tail(self) -> str:
        if self.tmpdir is None:
            return "no log"
        try:
            lines = (self.tmpdir / "postgres.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        errors = [line for line in lines if "FATAL" in line or "ERROR" in line]
        return (errors or lines or ["no log"])[-1]


@contextlib.contextmanager
def database(dsn: str | None) -> Iterator[tuple[str, str]]:
    """Yield (dsn, description): the given server, checked first, or an embedded cluster."""
    from probe import dsn as dsn_mod

    if dsn:
        version = dsn_mod.check(dsn)
        yield dsn, f"PostgreSQL {version} at {dsn_mod.describe(dsn)}"
        return
    cluster = EphemeralCluster()
    try:
        cluster.start()
        yield cluster.dsn, f"embedded PostgreSQL {cluster.version} (127.0.0.1:{cluster.port})"
    finally:
        cluster.stop()
