"""A real pyctdb cluster: ``ctdbd`` nodes in network namespaces.

Each node gets its own CTDB_BASE (ctdb.conf, nodes, cluster key), run and state
directories under the test's temporary directory, and runs the real ``ctdbd`` in its
namespace.  The ``ctdb`` command reaches a node's local socket by path, so tests run
it from the host with that node's CTDB_BASE.  (The lab tool, ``ctdb-sandbox``,
will drive this.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ctdb.sandbox.netns import Lan

BIN = Path(sys.executable).parent
KEY = "3f8a0c1e5b7d9f2a4c6e8b0d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a"
T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 20.0,
             interval: float = 0.05) -> T:
    """Poll *fn* until it returns something truthy; fail naming *what* at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = fn()
        except Exception as exc:  # remembered for the failure message
            value, last = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last})")
        time.sleep(interval)


class Cluster:
    def __init__(self, root: Path, count: int = 3, tag: str = "c") -> None:
        self.root = root
        self.count = count
        self.lan = Lan(tag, count)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    # -- layout --------------------------------------------------------------------
    def base(self, i: int) -> Path:
        return self.root / f"node{i}" / "etc"

    def run_dir(self, i: int) -> Path:
        return self.root / f"node{i}" / "run"

    def log(self, i: int) -> Path:
        return self.root / f"node{i}" / "log.ctdb"

    def log_text(self, i: int) -> str:
        return self.log(i).read_text() if self.log(i).exists() else ""

    def write_base(self, i: int, key: str = KEY, extra: str = "") -> None:
        base = self.base(i)
        base.mkdir(parents=True, exist_ok=True)
        node = self.root / f"node{i}"
        (base / "ctdb.conf").write_text(
            "[logging]\n"
            f"    location = file:{self.log(i)}\n"
            "    log level = INFO\n"
            "[cluster]\n"
            f"    key file = {base / 'cluster.key'}\n"
            "[paths]\n"
            f"    run directory = {node / 'run'}\n"
            f"    state directory = {node / 'state'}\n" + extra
        )
        (base / "nodes").write_text("".join(f"{a}\n" for a in self.lan.addresses))
        keyfile = base / "cluster.key"
        keyfile.write_text(key + "\n")
        keyfile.chmod(0o600)

    def env(self, i: int) -> dict[str, str]:
        env = dict(os.environ, CTDB_BASE=str(self.base(i)))
        env.pop("NOTIFY_SOCKET", None)
        return env

    # -- processes -----------------------------------------------------------------
    def up(self) -> None:
        self.lan.up()
        for i in range(self.count):
            self.write_base(i)
        for i in range(self.count):
            self.start(i)
        for i in range(self.count):
            self.wait_ready(i)

    def start(self, i: int, *args: str, env: dict[str, str] | None = None) -> None:
        self.procs[i] = subprocess.Popen(
            ["ip", "netns", "exec", self.lan.nodes[i], str(BIN / "ctdbd"), "--foreground",
             *args],
            env=env or self.env(i), stdout=subprocess.DEVNULL,
            stderr=open(self.root / f"node{i}.stderr", "ab"),  # noqa: SIM115
        )

    def wait_ready(self, i: int, timeout: float = 30.0) -> None:
        wait_for(f"node {i} to answer ping",
                 lambda: self.ctdb(i, "ping", check=False).returncode == 0, timeout)

    def stop(self, i: int, timeout: float = 15.0) -> int | None:
        proc = self.procs.pop(i, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
        return proc.returncode

    def down(self) -> None:
        for i in list(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(i)
        self.lan.down()

    def ctdb(self, i: int, *args: str, check: bool = True,
             timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(BIN / "ctdb"), *args], env=self.env(i), text=True,
                                capture_output=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"ctdb {' '.join(args)} on node {i} failed "
                                 f"({result.returncode}): {result.stderr.strip()}")
        return result

    def children(self, i: int) -> dict[str, int]:
        """Daemon children of node *i*'s ctdbd, by process name."""
        proc = self.procs[i]
        # `ip netns exec` execs ctdbd, so the Popen pid is ctdbd itself.
        out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(proc.pid)],
                             capture_output=True, text=True, check=False).stdout
        result = {}
        for line in out.splitlines():
            pid, name = line.split(None, 1)
            result[name.strip()] = int(pid)
        return result
