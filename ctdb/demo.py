"""``make demo``: a 3-node pyctdb cluster on this machine, shown step by step.

The cluster is a ``ctdb-sandbox`` (name ``demo``): each node a network namespace on a
private and a public bridge (198.18.1.0/24, 198.18.2.0/24) running the real ``ctdbd``;
every command shown is the real ``ctdb`` tool.  The sandbox stays up at the end for
the user to try (``ctdb-sandbox down --name demo`` removes it); on failure or Ctrl-C it
is torn down.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from ctdb.sandbox.lab import Options, Sandbox, wait_for


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(cluster: Sandbox, node: int, *args: str) -> str:
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
    cluster = Sandbox(Options(name="demo", nodes=3, public_ips=3))
    try:
        say("Starting a 3-node cluster: one network namespace and one ctdbd per node")
        started = time.monotonic()
        cluster.up(lambda msg: print(f"  {msg}", flush=True))
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
        cluster.cut(2, "private")
        started = time.monotonic()
        wait_for("node 2 seen as disconnected",
                 lambda: "DISCONNECTED" in cluster.ctdb(0, "status").stdout)
        print(f"node 0 sees node 2 disconnected after {time.monotonic() - started:.2f}s")
        show(cluster, 0, "status")
        show(cluster, 0, "-n", "2", "ping")

        say("The network heals; the link comes back by itself")
        cluster.heal(2)
        started = time.monotonic()
        wait_for("node 2 back",
                 lambda: cluster.ctdb(0, "-n", "2", "ping", check=False).returncode == 0)
        print(f"node 2 answers again after {time.monotonic() - started:.2f}s")
        show(cluster, 0, "-n", "all", "ping")
    except BaseException:
        cluster.down()
        raise
    bin_dir = Path(sys.executable).parent
    say("Coming next: leader election and public IP failover (then SMB and NFS on the "
        "public IPs, with a client reading through a failover)")
    say("The sandbox stays up for you to try:")
    print(f"  {bin_dir}/ctdb-sandbox exec --name demo 0 ctdb status")
    print(f"  {bin_dir}/ctdb-sandbox kill --name demo 1 transport")
    print(f"  {bin_dir}/ctdb-sandbox cut --name demo 2 private")
    print(f"  {bin_dir}/ctdb-sandbox down --name demo      # removes every trace of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
