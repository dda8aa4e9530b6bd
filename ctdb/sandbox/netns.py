"""Network namespaces for tests: real netlink, real bridges, cleaned up always.

Every namespace a test run creates is named ``pctdbt-<pid>-...``; at start, leftovers
of runs whose process is gone are removed, so a crashed run never leaks into the
next.  Addresses come from 198.18.0.0/15 only and no namespace has a route out.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

PREFIX = "pctdbt"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def namespaces() -> list[str]:
    out = sh("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def delete_namespace(name: str) -> None:
    pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    sh("ip", "netns", "del", name, check=False)


def clean_stale() -> None:
    """Remove namespaces left by earlier test runs whose process has died."""
    for name in namespaces():
        m = re.match(rf"{PREFIX}-(\d+)-", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            delete_namespace(name)


def unique(tag: str) -> str:
    return f"{PREFIX}-{os.getpid()}-{tag}"


@contextlib.contextmanager
def entered(name: str, addresses: list[str]) -> Iterator[None]:
    """Create namespace *name* with *addresses* on its loopback and move the calling
    thread into it for the duration (sockets opened meanwhile live there)."""
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        for addr in addresses:
            sh("ip", "-n", name, "addr", "add", addr, "dev", "lo")
        original = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            setns(target)
            try:
                yield
            finally:
                setns(original)
        finally:
            os.close(original)
            os.close(target)
    finally:
        delete_namespace(name)


class Lan:
    """A bridge namespace and N node namespaces, node i at ``198.18.1.(i+1)/24``."""

    def __init__(self, tag: str, count: int) -> None:
        self.bridge = unique(f"{tag}-br")
        self.nodes = [unique(f"{tag}-n{i}") for i in range(count)]
        self.addresses = [f"198.18.1.{i + 1}" for i in range(count)]

    def up(self) -> None:
        clean_stale()
        sh("ip", "netns", "add", self.bridge)
        sh("ip", "-n", self.bridge, "link", "set", "lo", "up")
        sh("ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.bridge, "link", "set", "br0", "up")
        for i, (ns, addr) in enumerate(zip(self.nodes, self.addresses, strict=True)):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth",
               "peer", "name", f"p{i}", "netns", self.bridge)
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", self.bridge, "link", "set", f"p{i}", "master", "br0")
            sh("ip", "-n", self.bridge, "link", "set", f"p{i}", "up")

    def down(self) -> None:
        for ns in [*self.nodes, self.bridge]:
            delete_namespace(ns)

    def cut(self, i: int) -> None:
        """Silently drop everything node *i* sends and receives (carrier stays up)."""
        rules = ("add table inet pctdbt_cut\n"
                 "add chain inet pctdbt_cut in { type filter hook input priority -300; }\n"
                 "add chain inet pctdbt_cut out { type filter hook output priority -300; }\n"
                 "add rule inet pctdbt_cut in iifname eth0 drop\n"
                 "add rule inet pctdbt_cut out oifname eth0 drop\n")
        subprocess.run(["ip", "netns", "exec", self.nodes[i], "nft", "-f", "-"],
                       input=rules, text=True, check=True, capture_output=True)

    def heal(self, i: int) -> None:
        sh("ip", "netns", "exec", self.nodes[i], "nft", "delete", "table", "inet", "pctdbt_cut")
