"""Hosts of our own for the tests of `run --target` and remote load workers: Linux network
namespaces on one virtual switch, none of them the machine's.

Each host is a namespace held by an `unshare --net sleep` process that dies with the test
(PDEATHSIG), so the namespace, its veth and everything in it vanish with its last process, even
after a kill -9. The switch is a bridge inside a namespace of its own too: nothing is added to
the machine's network, and traffic goes only to these addresses.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from probe.lifecycle import die_with_parent, stop_group

SUBNET = "10.213.0"
APP_PORT = 8000
ROOT = Path(__file__).resolve().parent.parent


def available() -> str | None:
    """Why namespaces cannot be built here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "unshare", "nsenter") if not shutil.which(tool)]
    return f"missing {', '.join(missing)}" if missing else None


class Namespace:
    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "3600"],
                                       preexec_fn=die_with_parent)
        self.path = f"/proc/{self.holder.pid}/ns/net"
        self.ip("link", "set", "lo", "up")

    def argv(self, *argv: str) -> list[str]:
        return ["nsenter", f"--net={self.path}", "--", *argv]

    def ip(self, *args: str) -> None:
        subprocess.run(self.argv("ip", *args), check=True, capture_output=True, timeout=30)

    def start(self, argv: list[str], log: Path, env: dict[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[bytes]:
        """A process in this namespace, in a session of its own (stop() ends the group)."""
        with open(log, "wb") as out:
            return subprocess.Popen(self.argv(*argv), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, **(env or {})},
                                    preexec_fn=die_with_parent, **kwargs)

    def close(self) -> None:
        stop_group(self.holder, timeout=5)


class Network:
    """A switch and hosts 10.213.0.1, .2, ... on it."""

    def __init__(self) -> None:
        self.switch = Namespace()
        self.switch.ip("link", "add", "br0", "type", "bridge")
        self.switch.ip("link", "set", "br0", "up")
        self.hosts: list[Namespace] = []

    def host(self) -> tuple[Namespace, str]:
        """A new host on the switch, and its address."""
        host = Namespace()
        self.hosts.append(host)
        n = len(self.hosts)
        address = f"{SUBNET}.{n}"
        self.switch.ip("link", "add", f"port{n}", "type", "veth", "peer", "name", "eth0",
                       "netns", str(host.holder.pid))
        self.switch.ip("link", "set", f"port{n}", "master", "br0", "up")
        host.ip("addr", "add", f"{address}/24", "dev", "eth0")
        host.ip("link", "set", "eth0", "up")
        return host, address

    def close(self) -> None:
        for ns in [*self.hosts, self.switch]:
            ns.close()


def socket_dsn(cluster: Any, folder: Path) -> str:
    """The cluster through its unix socket (a path: namespaces separate networks only).
    libpq reads a socket's passfile entries under host "localhost", so the cluster's entry
    is copied, for any host, into a passfile in `folder`."""
    passfile = folder / "pgpass"
    entry = Path(cluster.passfile).read_text().strip().split(":", 1)[1]
    passfile.write_text(f"*:{entry}\n")
    passfile.chmod(0o600)
    return (cluster.dsn.replace("host=127.0.0.1", f"host={cluster.tmpdir}")
            .replace(f"passfile={cluster.passfile}", f"passfile={passfile}"))


class App:
    """The sample app as a team would deploy it: gunicorn, 2 gevent workers, the config of
    examples/deployed_gunicorn_conf.py (the agent's hook), on `address`."""

    def __init__(self, host: Namespace, address: str, dsn: str, variant: str,
                 token: str | None, log: Path) -> None:
        self.url = f"http://{address}:{APP_PORT}"
        env = {"BIND": f"{address}:{APP_PORT}", "WORKERS": "2",
               "GEVENT_PROBE_VARIANT": variant, "GEVENT_PROBE_DSN": dsn,
               "GEVENT_PROBE_AGENT_TOKEN": token or ""}
        self.host = host
        self.proc = host.start([sys.executable, "-m", "gunicorn", "-c",
                                str(ROOT / "examples/deployed_gunicorn_conf.py"),
                                "probe.apps.probe_app:application"], log, env=env, cwd=ROOT)
        self.wait_ready()

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        """GET from inside the app's host: (status, body)."""
        code = ("import sys, urllib.request as u, urllib.error as e\n"
                "headers = {'X-Gevent-Probe-Token': sys.argv[2]} if len(sys.argv) > 2 else {}\n"
                "opener = u.build_opener(u.ProxyHandler({}))\n"
                "try:\n"
                "    r = opener.open(u.Request(sys.argv[1], headers=headers), timeout=10)\n"
                "    print(r.status); sys.stdout.write(r.read().decode())\n"
                "except e.HTTPError as ex:\n"
                "    print(ex.code)\n")
        argv = [sys.executable, "-c", code, self.url + path, *([token] if token else [])]
        out = subprocess.run(self.host.argv(*argv), capture_output=True, text=True,
                             timeout=30, check=True).stdout
        status, _, body = out.partition("\n")
        return int(status), body.encode()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.get("/select1")[0] == 200:
                    return
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the app did not start on {self.url}")

    def stop(self) -> None:
        stop_group(self.proc, signal.SIGTERM, timeout=15)
