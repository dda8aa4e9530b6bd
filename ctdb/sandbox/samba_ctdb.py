"""Samba's own CTDB (the Debian ``ctdb`` package) as a lab cluster, the peer we
measure ourselves against.

Samba's ``ctdbd`` has fixed paths (``/etc/ctdb``, ``/var/lib/ctdb``, ``/run/ctdb``),
so each node runs in its own network namespace (a ``Lan`` of its own, separate from
ours) *and* a private mount namespace in which per-node directories are bind-mounted
over those paths.  The ``ctdb`` tool must see the same mounts to find the node's
socket, so :meth:`SambaCluster.ctdb` runs it with ``nsenter`` into the node's
namespaces.  Nothing is mounted or made on the host: the mounts (and a tmpfs /run of
the node's own, so no ``/run/ctdb`` mount point is needed on the host, which several
labs would share) live and die with the node's mount namespace.

The class mirrors :class:`ctdb.sandbox.lab.Sandbox` (``up``, ``down``,
``ctdb(i, ...)``, ``children(i)``), so ``ctdb-sandbox`` can offer both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ctdb.sandbox.netns import Lan

CTDBD = Path("/usr/sbin/ctdbd")
CTDB_TOOL = Path("/usr/bin/ctdb")
ETC, VAR, RUN = Path("/etc/ctdb"), Path("/var/lib/ctdb"), Path("/run/ctdb")

# Runs inside the node's network namespace: a private mount namespace, the node's
# own directories over the fixed paths, then ctdbd in the foreground (same pid).
_NODE_SCRIPT = (
    'mount --bind "$1" /etc/ctdb && '
    'mount --bind "$2" /var/lib/ctdb && '
    # A /run of the node's own: nothing is made on the host's, which other labs share.
    'mount -t tmpfs -o mode=0755 pyctdb-run /run && mkdir /run/ctdb && '
    'mount --bind "$3" /run/ctdb && '
    f'exec {CTDBD} --interactive'
)


class SambaCtdbMissing(RuntimeError):
    """Samba's CTDB is not installed (Debian package ``ctdb``)."""


def installed() -> bool:
    return CTDBD.exists() and CTDB_TOOL.exists()


class SambaCluster:
    """A cluster of Samba CTDB 4.x daemons, node i at ``198.18.1.(i+1)`` of its own Lan."""

    def __init__(self, root: Path, count: int = 3, tag: str = "s",
                 log_level: str = "NOTICE") -> None:
        self.root = root
        self.count = count
        self.log_level = log_level
        self.lan = Lan(tag, count)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._lan_up = False

    # -- layout --------------------------------------------------------------------
    def node_dir(self, i: int) -> Path:
        return self.root / f"snode{i}"

    def etc(self, i: int) -> Path:
        return self.node_dir(i) / "etc"

    def var(self, i: int) -> Path:
        return self.node_dir(i) / "var"

    def run_dir(self, i: int) -> Path:
        return self.node_dir(i) / "run"

    def log(self, i: int) -> Path:
        return self.node_dir(i) / "log.ctdb"

    def log_text(self, i: int) -> str:
        return self.log(i).read_text(errors="replace") if self.log(i).exists() else ""

    def write_node(self, i: int) -> None:
        """The node's /etc/ctdb (the package's files, our ctdb.conf and nodes),
        /var/lib/ctdb and /run/ctdb."""
        etc = self.etc(i)
        if etc.exists():
            shutil.rmtree(etc)
        shutil.copytree(ETC, etc, symlinks=True)
        (etc / "ctdb.conf").write_text(
            "[logging]\n"
            f"\tlocation = file:{self.log(i)}\n"
            f"\tlog level = {self.log_level}\n"
            "[legacy]\n"
            # Realtime scheduling fails in VMs and containers; CTDB's own advice.
            "\trealtime scheduling = false\n"
        )
        (etc / "nodes").write_text("".join(f"{a}\n" for a in self.lan.addresses))
        for sub in ("persistent", "state", "volatile"):
            (self.var(i) / sub).mkdir(parents=True, exist_ok=True)
        self.run_dir(i).mkdir(parents=True, exist_ok=True, mode=0o755)

    # -- processes -----------------------------------------------------------------
    def up(self, timeout: float = 90.0) -> None:
        """Start every node and wait until all are OK and recovery is done.

        On failure everything started so far is torn down before the error propagates.
        """
        if not installed():
            raise SambaCtdbMissing(f"{CTDBD} is missing: install Debian's ctdb package")
        try:
            self.lan.up()
            self._lan_up = True
            for i in range(self.count):
                self.write_node(i)
            for i in range(self.count):
                self.start(i)
            self.wait_healthy(timeout)
        except BaseException:
            self.down()
            raise

    def start(self, i: int) -> None:
        self.procs[i] = subprocess.Popen(
            ["ip", "netns", "exec", self.lan.nodes[i],
             "unshare", "--mount", "--propagation", "private",
             "sh", "-c", _NODE_SCRIPT, "sh",
             str(self.etc(i)), str(self.var(i)), str(self.run_dir(i))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.log(i), "ab"),  # noqa: SIM115 (the child keeps it)
            start_new_session=True,
        )

    def pid(self, i: int) -> int:
        """ctdbd's pid: ``ip netns exec``, ``unshare`` and ``sh`` all exec, so it is
        the pid of the process we started."""
        return self.procs[i].pid

    def healthy(self) -> bool:
        """Every node answers, every node reports all nodes OK and recovery NORMAL."""
        for i in range(self.count):
            if self.procs[i].poll() is not None:
                raise RuntimeError(f"Samba ctdbd on node {i} exited "
                                   f"({self.procs[i].returncode}); log: {self.log(i)}")
            res = self.ctdb(i, "status", check=False, timeout=10)
            if res.returncode != 0:
                return False
            lines = res.stdout.splitlines()
            node_lines = [ln for ln in lines if ln.strip().startswith("pnn:")]
            if len(node_lines) != self.count or not all(
                    ln.rstrip().endswith("OK") or ln.rstrip().endswith("OK (THIS NODE)")
                    for ln in node_lines):
                return False
            if not any(ln.startswith("Recovery mode:NORMAL") for ln in lines):
                return False
        return True

    def wait_healthy(self, timeout: float = 90.0) -> None:
        """Poll :meth:`healthy`; a node whose ctdbd died fails at once."""
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Samba CTDB nodes not all OK after {timeout:g}s; "
                                   f"logs in {self.root}")
            time.sleep(0.5)

    def stop(self, i: int, timeout: float = 10.0) -> None:
        """Stop node *i*'s ctdbd and every process left in its namespace."""
        proc = self.procs.pop(i, None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.kill()
                proc.wait()
        if proc is not None:
            # Event scripts or lock helpers that outlived ctdbd, same session.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def down(self) -> None:
        """Stop every node, delete the namespaces.

        Safe to call more than once, and after a partial ``up``."""
        for i in list(self.procs):
            self.stop(i)
        if self._lan_up:
            self.lan.down()  # kills anything still in the node namespaces
            self._lan_up = False

    # -- tools ---------------------------------------------------------------------
    def nsenter(self, i: int) -> list[str]:
        """The argv prefix that runs a command in node *i*'s network and mount namespaces."""
        return ["nsenter", "-t", str(self.pid(i)), "-m", "-n"]

    def ctdb(self, i: int, *args: str, check: bool = True,
             timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run Samba's ``ctdb`` tool against node *i*."""
        result = subprocess.run([*self.nsenter(i), str(CTDB_TOOL), *args], text=True,
                                capture_output=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"Samba ctdb {' '.join(args)} on node {i} failed "
                                 f"({result.returncode}): {result.stderr.strip()}")
        return result

    def socket_path(self, i: int) -> Path:
        """Node *i*'s ctdbd.socket as seen from the host (through its bind source)."""
        return self.run_dir(i) / "ctdbd.socket"

    def children(self, i: int) -> dict[str, int]:
        """Direct children of node *i*'s ctdbd, by process name (e.g. ``ctdb-eventd``)."""
        out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(self.pid(i))],
                             capture_output=True, text=True, check=False).stdout
        result = {}
        for line in out.splitlines():
            pid, name = line.split(None, 1)
            result[name.strip()] = int(pid)
        return result
