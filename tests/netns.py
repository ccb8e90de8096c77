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
import subprocess
from pathlib import Path
from typing import Any

from probe.lifecycle import die_with_parent, stop_group

SUBNET = "10.213.0"


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
