"""``make demo``: a 3-node pyctdb cluster on this machine, shown step by step.

Each node is a network namespace on a private bridge (198.18.1.0/24) running the real
``ctdbd``; every command shown is the real ``ctdb`` tool.  Everything is torn down at
the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from ctdb.sandbox.cluster import Cluster, wait_for


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(cluster: Cluster, node: int, *args: str) -> str:
    print(f"[node {node}]$ ctdb {' '.join(args)}", flush=True)
    result = cluster.ctdb(node, *args, check=False)
    sys.stdout.write(result.stdout)
    if result.stderr:
        sys.stdout.write(result.stderr)
    sys.stdout.flush()
    return result.stdout


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="pyctdb-demo-") as tmp:
        cluster = Cluster(Path(tmp), 3, tag="demo")
        try:
            say("Starting a 3-node cluster: one network namespace and one ctdbd per node")
            started = time.monotonic()
            cluster.up()
            wait_for("all links up", lambda: "DISCONNECTED" not in cluster.ctdb(0, "status").stdout)
            print(f"all nodes answer after {time.monotonic() - started:.1f}s")
            show(cluster, 0, "status")
            show(cluster, 0, "-n", "all", "ping")
            show(cluster, 0, "-n", "2", "uptime")
            show(cluster, 1, "-X", "status")

            say("A daemon crashes: kill -9 node 1's ctdb-transport; masterd restarts it")
            pid = cluster.children(1)["ctdb-transport"]
            os.kill(pid, signal.SIGKILL)
            started = time.monotonic()
            wait_for("node 1 to answer again",
                     lambda: cluster.ctdb(0, "-n", "1", "ping", check=False).returncode == 0)
            print(f"node 1 answers again after {time.monotonic() - started:.2f}s")
            for line in cluster.log_text(1).splitlines():
                if "restarting" in line:
                    print(f"  log: {line}")

            say("Node 2's network is cut silently (its carrier stays up)")
            cluster.lan.cut(2)
            started = time.monotonic()
            wait_for("node 2 seen as disconnected",
                     lambda: "DISCONNECTED" in cluster.ctdb(0, "status").stdout)
            print(f"node 0 sees node 2 disconnected after {time.monotonic() - started:.2f}s")
            show(cluster, 0, "status")
            show(cluster, 0, "-n", "2", "ping")

            say("The network heals; the link comes back by itself")
            cluster.lan.heal(2)
            started = time.monotonic()
            wait_for("node 2 back",
                     lambda: cluster.ctdb(0, "-n", "2", "ping", check=False).returncode == 0)
            print(f"node 2 answers again after {time.monotonic() - started:.2f}s")
            show(cluster, 0, "-n", "all", "ping")

            say("Stopping every node (SIGTERM: daemons stop in reverse order)")
        finally:
            cluster.down()
    say("Done: every namespace and process is gone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
