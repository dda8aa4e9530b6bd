"""``make demo``: a 3-node pyctdb cluster on this machine, shown step by step.

The cluster is a ``ctdb-sandbox`` (name ``demo``): each node a network namespace on a
private and a public bridge running the real ``ctdbd``, three public addresses spread
over the nodes, and a client namespace on the public network.  Every command shown is
the real ``ctdb`` tool.  A probe in the client namespace asks every public address for
the name of the node serving it, every 10 ms, so the demo shows what a client sees
during a failover.  The sandbox stays up at the end for the user to try
(``ctdb-sandbox down --name demo`` removes it); on failure or Ctrl-C it is torn down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ctdb.sandbox.lab import Options, Sandbox, wait_for

PORT = 7777
# A tiny TCP service on every node that answers with the node's name; it runs in the
# node's network namespace, so it answers on whatever public address the node holds.
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(64)
while True:
    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
"""
# The client: one line of JSON per change of who serves an address.
PROBE = """
import json, socket, sys, time
ips, port, seconds = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3])
last = {}
t0 = time.monotonic()
while time.monotonic() - t0 < seconds:
    for ip in ips:
        s = socket.socket(); s.settimeout(0.05)
        try:
            s.connect((ip, port)); who = s.recv(64).decode() or "?"
        except OSError:
            who = None
        finally:
            s.close()
        if last.get(ip, "") != who:
            last[ip] = who
            print(json.dumps({"t": round(time.monotonic() - t0, 3), "ip": ip, "node": who}),
                  flush=True)
    time.sleep(0.01)
"""


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


def holders(cluster: Sandbox) -> dict[str, int | None]:
    doc = json.loads(cluster.ctdb(0, "--json", "ip", "all").stdout)
    return {e["address"]: e["pnn"] for e in doc["ips"]}


def outage(cluster: Sandbox, ips: list[str], fault: str, action: Callable[[], object],
           seconds: float = 8.0) -> None:
    """Run *action* while the client probes; report each address's outage."""
    probe = subprocess.Popen(
        cluster.client_argv([sys.executable, "-c", PROBE, ",".join(ips), str(PORT),
                             str(seconds)]), stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # the client's view before the fault
    action()
    out, _ = probe.communicate()
    events = [json.loads(line) for line in out.splitlines()]
    fault_at = 0.4  # probe time: the fault came about 0.5 s after the probe started
    for ip in ips:
        mine = [e for e in events if e["ip"] == ip]
        down = next((e["t"] for e in mine if e["node"] is None and e["t"] >= fault_at), None)
        back = next((e for e in mine if down is not None and e["t"] > down and e["node"]),
                    None)
        before = next((e["node"] for e in mine if e["t"] < fault_at), "?")
        if down is None:
            print(f"  {ip}: served by {before} throughout ({fault})")
        elif back is None:
            print(f"  {ip}: served by {before}, then not served again within {seconds:g}s")
        else:
            print(f"  {ip}: served by {before}, then by {back['node']} after an outage of "
                  f"{(back['t'] - down) * 1000:.0f} ms")


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    cluster = Sandbox(Options(name="demo", nodes=3, public_ips=3))
    try:
        say("Starting a 3-node cluster: one network namespace and one ctdbd per node")
        started = time.monotonic()
        cluster.up(lambda msg: print(f"  {msg}", flush=True))
        for node in cluster.topo.nodes:
            subprocess.Popen(["ip", "netns", "exec", node.netns, sys.executable, "-c", SERVER,
                              f"node{node.pnn}", str(PORT)], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ips = list(cluster.topo.public_ips)
        wait_for("every public address hosted", lambda: sorted(
            p for p in holders(cluster).values() if p is not None) == [0, 1, 2])
        print(f"cluster up and every public address hosted after "
              f"{time.monotonic() - started:.1f}s")
        show(cluster, 0, "status")
        show(cluster, 0, "ip", "all")

        victim = holders(cluster)[ips[1]] or 1
        say(f"Graceful move: node {victim} is disabled (ctdb disable), its address moves")
        outage(cluster, ips, "disable", lambda: cluster.ctdb(victim, "disable"), 3.0)
        cluster.ctdb(victim, "enable")
        wait_for("addresses rebalanced", lambda: sorted(
            p for p in holders(cluster).values() if p is not None) == [0, 1, 2])

        victim = holders(cluster)[ips[2]] or 2
        say(f"Node {victim} freezes (SIGSTOP on every process): its kernel still holds the "
            "address, so it moves only when the node's lease has surely lapsed")
        try:
            outage(cluster, ips, "freeze", lambda: cluster.freeze(victim), 6.0)
        finally:
            cluster.thaw(victim)
        show(cluster, 0, "status")
        show(cluster, 0, "ip", "all")

        say("A daemon crashes: kill -9 node 1's ctdb-transport; masterd restarts it")
        cluster.kill(1, "transport")
        started = time.monotonic()
        wait_for("node 1 to answer again",
                 lambda: cluster.ctdb(0, "-n", "1", "ping", check=False).returncode == 0)
        print(f"node 1 answers again after {time.monotonic() - started:.2f}s")
    except BaseException:
        cluster.down()
        raise
    bin_dir = Path(sys.executable).parent
    say("Coming next: millisecond leases for faster forced moves, tickle ACKs, event "
        "scripts, and SMB and NFS served on the public addresses")
    say("The sandbox stays up for you to try:")
    print(f"  {bin_dir}/ctdb-sandbox exec --name demo 0 ctdb status")
    print(f"  {bin_dir}/ctdb-sandbox exec --name demo 0 ctdb ip all")
    print(f"  {bin_dir}/ctdb-sandbox cut --name demo 2 private")
    print(f"  {bin_dir}/ctdb-sandbox down --name demo      # removes every trace of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
