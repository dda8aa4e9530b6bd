"""Nodes as plain network namespaces: ``ctdbd`` and a private dbus-daemon per node.

For machines without systemd-nspawn.  Each node's system bus is its own dbus-daemon
(NFS-Ganesha's bus name is fixed, so nodes cannot share one), reached through
``DBUS_SYSTEM_BUS_ADDRESS``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ctdb.sandbox.topology import NodeSpec, SandboxError

if TYPE_CHECKING:
    from ctdb.sandbox.lab import Sandbox

DBUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/><allow own="*"/><allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


class NetnsBackend:
    def __init__(self) -> None:
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def bus_socket(self, node: NodeSpec) -> Path:
        return node.root / "dbus" / "system_bus_socket"

    def node_env(self, sb: Sandbox, node: NodeSpec) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env["CTDB_BASE"] = str(node.base)
        env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={self.bus_socket(node)}"
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        return env

    def exec_argv(self, sb: Sandbox, node: NodeSpec, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", node.netns, *argv]

    def _start_bus(self, node: NodeSpec) -> None:
        sock = self.bus_socket(node)
        if sock.exists():
            return
        sock.parent.mkdir(parents=True, exist_ok=True)
        conf = sock.parent / "bus.conf"
        conf.write_text(DBUS_CONFIG.format(path=sock))
        subprocess.run(["ip", "netns", "exec", node.netns, "dbus-daemon",
                        f"--config-file={conf}", "--fork"], check=True, capture_output=True)

    def start(self, sb: Sandbox, node: NodeSpec, args: Sequence[str] = (),
              env: dict[str, str] | None = None) -> None:
        node.run_dir.mkdir(parents=True, exist_ok=True)
        self._start_bus(node)
        with open(node.root / "ctdbd.out", "ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", node.netns, str(Path(sys.executable).parent / "ctdbd"),
                 "--foreground", *args],
                env={**self.node_env(sb, node), **(env or {})}, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._procs[proc.pid] = proc
        sb.options.pids[str(node.pnn)] = proc.pid

    def stop(self, sb: Sandbox, node: NodeSpec, timeout: float) -> None:
        pid = sb.options.pids.get(str(node.pnn))
        if pid is None or not _alive(pid):
            self._reap(pid)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            self._reap(pid)
            time.sleep(0.02)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._reap(pid, block=True)
            raise SandboxError(f"ctdbd on node {node.pnn} did not stop within {timeout:g}s")
        self._reap(pid)

    def _reap(self, pid: int | None, block: bool = False) -> None:
        proc = self._procs.get(pid) if pid is not None else None
        if proc is None:
            return
        if block:
            proc.wait()
        elif proc.poll() is None:
            return
        self._procs.pop(proc.pid, None)
