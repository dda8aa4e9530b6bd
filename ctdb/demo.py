"""``make demo``: a 3-node pyctdb cluster on this machine serving SMB and NFS, shown step by step.

The cluster is a ``ctdb-sandbox`` (name ``demo``): each node a systemd container (a clone
of this machine's OS) in its own network namespace, on a private and a public bridge,
running the real ``ctdbd`` as its ``ctdb.service``; pyctdb's serviced runs smbd and
NFS-Ganesha in every node on storage they share; three public addresses are spread over
the nodes; a client namespace on the public network uses them with smbclient and libnfs.
Every command shown is the real ``ctdb`` tool.  A probe in the client namespace asks
every public address for the name of the node serving it, every 10 ms, so the demo shows
what a client sees during a failover.  The sandbox stays up at the end for the user to
try (``ctdb-sandbox down --name demo`` removes it); on failure or Ctrl-C it is torn down.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ctdb.sandbox import fileclient
from ctdb.sandbox.lab import Options, Sandbox, wait_for
from ctdb.sandbox.probe import Probe, start_echo


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
    with Probe(cluster, ips) as probe:
        time.sleep(0.5)  # the client's view before the fault
        action()
        time.sleep(seconds)
    for ip in ips:
        before = next((e["node"] for e in probe.events if e["ip"] == ip and e["node"]), "?")
        gaps = probe.outages(ip, after=0.3)
        if not gaps:
            print(f"  {ip}: served by {before} throughout ({fault})")
        else:
            down, back, old, new = gaps[0]
            print(f"  {ip}: served by {old}, then by {new} after an outage of "
                  f"{(back - down) * 1000:.0f} ms")


def files_through(cluster: Sandbox, smb_ip: str, nfs_ip: str) -> tuple[str, str]:
    """Write a file over SMB to *smb_ip* and one over NFS to *nfs_ip*; their checksums."""
    client = cluster.topo.client
    smb = fileclient.smb_put(smb_ip, "data", "report.bin", os.urandom(4 << 20), client)
    print(f"  smbclient //{smb_ip}/data put report.bin (4 MiB): sha256 {smb[:16]}...")
    nfs = wait_for("NFS to take new files", lambda: _nfs(
        lambda: fileclient.nfs_put(nfs_ip, "/data/notes.bin", os.urandom(3000), client)))
    print(f"  nfs-cp notes.bin nfs://{nfs_ip}/data/ (3 KB): sha256 {nfs[:16]}...")
    return smb, nfs


def _nfs(call: Callable[[], str], graces: list[float] | None = None) -> str | None:
    try:
        return call()
    except fileclient.FileServiceError as exc:
        if exc.grace and graces is not None:
            graces.append(time.monotonic())
        if exc.grace:
            return None
        raise


def read_back(cluster: Sandbox, smb_ip: str, nfs_ip: str, smb_sum: str, nfs_sum: str) -> None:
    """The files again, through the same address, now served by another node."""
    client = cluster.topo.client
    started = time.monotonic()
    got = fileclient.smb_get(smb_ip, "data", "report.bin", client)
    print(f"  smbclient //{smb_ip}/data get report.bin: sha256 {got[:16]}... "
          f"({'the same' if got == smb_sum else 'DIFFERENT'})")
    graces: list[float] = []
    got = wait_for("the NFS read", lambda: _nfs(
        lambda: fileclient.nfs_get(nfs_ip, "/data/notes.bin", client), graces), timeout=30)
    note = (f"after {time.monotonic() - started:.1f}s of NFS4ERR_GRACE (clients may "
            "reclaim their locks first)" if graces else "")
    print(f"  nfs-cat nfs://{nfs_ip}/data/notes.bin: sha256 {got[:16]}... "
          f"({'the same' if got == nfs_sum else 'DIFFERENT'}) {note}")
    got = fileclient.nfs_get(nfs_ip, "/data/report.bin", client)
    print(f"  nfs-cat nfs://{nfs_ip}/data/report.bin (written over SMB): sha256 "
          f"{got[:16]}... ({'the same' if got == smb_sum else 'DIFFERENT'})")


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (it creates network namespaces and containers)",
              file=sys.stderr)
        return 1
    cluster = Sandbox(Options(name="demo", nodes=3, backend="nspawn", public_ips=3,
                              services=["smb", "nfs"]))
    try:
        say("Starting a 3-node cluster: one systemd container per node, each running "
            "ctdb.service, smbd and NFS-Ganesha on shared storage")
        started = time.monotonic()
        cluster.up(lambda msg: print(f"  {msg}", flush=True))
        ips = list(cluster.topo.public_ips)
        wait_for("every public address hosted", lambda: sorted(
            p for p in holders(cluster).values() if p is not None) == [0, 1, 2], timeout=60)
        start_echo(cluster)
        print(f"cluster up, services running and every public address hosted after "
              f"{time.monotonic() - started:.1f}s")
        show(cluster, 0, "status")
        show(cluster, 0, "ip", "all")
        show(cluster, 0, "-n", "all", "service", "status")

        say("A client writes files through the public addresses")
        smb_ip = nfs_ip = ips[0]  # both through the address whose node will power off
        smb_sum, nfs_sum = files_through(cluster, smb_ip, nfs_ip)

        victim = holders(cluster)[ips[1]] or 1
        say(f"Graceful move: node {victim} is disabled (ctdb disable), its address moves")
        outage(cluster, ips, "disable", lambda: cluster.ctdb(victim, "disable"), 3.0)
        cluster.ctdb(victim, "enable")
        wait_for("addresses rebalanced", lambda: sorted(
            p for p in holders(cluster).values() if p is not None) == [0, 1, 2])

        victim = holders(cluster)[ips[2]] or 2
        say(f"smbd stops on node {victim} (systemctl stop smbd): the node is UNHEALTHY at "
            "once, its address moves; serviced restarts smbd and the node takes one back")
        outage(cluster, ips, "smbd stopped",
               lambda: cluster.exec(victim, ["systemctl", "stop", "smbd"], check=True), 4.0)
        show(cluster, victim, "service", "status")
        wait_for(f"node {victim} hosting again", lambda: victim in holders(cluster).values())
        show(cluster, 0, "ip", "all")

        victim = holders(cluster)[smb_ip] or 0
        say(f"Node {victim}, serving {smb_ip} where the files were written, powers off. Its "
            "address moves once its 300 ms lease (an nftables gate) has surely lapsed")
        outage(cluster, ips, "poweroff", lambda: cluster.poweroff(victim), 6.0)
        show(cluster, (victim + 1) % 3, "status")
        read_back(cluster, smb_ip, nfs_ip, smb_sum, nfs_sum)
    except BaseException:
        cluster.down()
        raise
    bin_dir = Path(sys.executable).parent
    say("Coming next: the clustered databases, smbd's CTDB protocol, heartbeats that "
        "packet loss under bulk traffic cannot delay")
    say("The sandbox stays up for you to try:")
    print(f"  {bin_dir}/ctdb-sandbox exec --name demo 0 ctdb status")
    print(f"  {bin_dir}/ctdb-sandbox exec --name demo 0 ctdb event status legacy monitor")
    print(f"  {bin_dir}/ctdb-sandbox exec --name demo 1 systemctl stop smbd")
    print(f"  {bin_dir}/ctdb-sandbox down --name demo      # removes every trace of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
