"""Cluster benchmark: start to all OK, and how fast a failed node is seen, beside CTDB.

    .venv/bin/python -m bench.cluster [--repeats N]

Both clusters have 3 nodes in network namespaces on this machine (ours a ctdb-sandbox,
Samba's CTDB 4.17 at its defaults in the bench's Samba lab).  "Detected" is when node 0
first reports node 2 DISCONNECTED, polled every 10 ms (ours through the local socket,
Samba's with its `ctdb nodestatus` tool, ~12 ms per call), after: kill -9 of the node's
daemons, a silent cut of its network, a freeze (SIGSTOP).  Prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ctdb.clusterd.messages import ClusterViewRequest
from ctdb.protocol import NODE_CURRENT, Address, Service
from ctdb.sandbox.lab import Options, Sandbox
from ctdb.sandbox.samba_ctdb import SambaCluster
from ctdb.transport.sync import SyncClient

POLL = 0.01


def ours_sees_disconnected(sb: Sandbox, victim: int) -> Callable[[], bool]:
    client = SyncClient(sb.topo.node(0).run_dir)

    def check() -> bool:
        view = client.request(Address(NODE_CURRENT, Service.CLUSTERD), ClusterViewRequest())
        return any(n.pnn == victim and n.flags & 0x01 for n in view.nodes)

    return check


def samba_sees_disconnected(peer: SambaCluster, victim: int) -> Callable[[], bool]:
    def check() -> bool:
        r = peer.ctdb(0, "nodestatus", str(victim), check=False)
        return "DISCONNECTED" in r.stdout

    return check


def timed(fault: Callable[[], None], seen: Callable[[], bool], limit: float) -> float | None:
    started = time.monotonic()
    fault()
    while time.monotonic() - started < limit:
        if seen():
            return time.monotonic() - started
        time.sleep(POLL)
    return None


def ours(repeats: int) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {"start to all OK": [], "kill -9": [], "cut": [],
                                          "freeze": []}
    for _ in range(repeats):
        _ours_once(out)
    return out


def _ours_once(out: dict[str, list[float | None]]) -> None:
    sb = Sandbox(Options(name=f"bc{os.getpid() % 100000}", nodes=3))
    try:
        t0 = time.monotonic()
        sb.up()
        while sb.ctdb(0, "nodestatus", "all", check=False).returncode != 0:
            time.sleep(POLL)
        out["start to all OK"].append(time.monotonic() - t0)
        seen = ours_sees_disconnected(sb, 2)
        out["kill -9"].append(timed(lambda: sb.kill(2), seen, 30))
        sb.start(2)
        sb.wait_ready(2)
        while seen():
            time.sleep(POLL)
        out["cut"].append(timed(lambda: sb.cut(2, "private"), seen, 60))
        sb.heal(2)
        while seen():
            time.sleep(POLL)
        out["freeze"].append(timed(lambda: sb.freeze(2), seen, 60))
        sb.thaw(2)
    finally:
        sb.down()


def samba(repeats: int, root: Path) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {"start to all OK": [], "kill -9": [], "cut": [],
                                          "freeze": []}
    for i in range(repeats):
        _samba_once(out, SambaCluster(root / f"s{i}", 3, tag=f"bc{i}"))
    return out


def _samba_once(out: dict[str, list[float | None]], peer: SambaCluster) -> None:
    try:
        t0 = time.monotonic()
        peer.up()
        out["start to all OK"].append(time.monotonic() - t0)
        seen = samba_sees_disconnected(peer, 2)

        def kill() -> None:
            for pid in [peer.pid(2), *peer.children(2).values()]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

        out["kill -9"].append(timed(kill, seen, 60))
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            peer.stop(2)
        peer.start(2)
        peer.wait_healthy()
        out["cut"].append(timed(lambda: peer.lan.cut(2), seen, 60))
        peer.lan.heal(2)
        peer.wait_healthy()
        pids = [peer.pid(2), *peer.children(2).values()]

        def freeze() -> None:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)

        out["freeze"].append(timed(freeze, seen, 60))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    finally:
        peer.down()


def leader_loss(repeats: int) -> list[float | None]:
    """With the etcd lock: cut the leader; time until another node reports a new leader."""
    return [_leader_loss_once() for _ in range(repeats)]


def _leader_loss_once() -> float | None:
    sb = Sandbox(Options(name=f"be{os.getpid() % 100000}", nodes=3, lock="etcd"))
    try:
        sb.up()
        client = SyncClient(sb.topo.node(1).run_dir)

        def leader() -> int:
            view = client.request(Address(NODE_CURRENT, Service.CLUSTERD),
                                  ClusterViewRequest())
            return int(view.leader)

        while leader() == 0xFFFFFFFF:
            time.sleep(POLL)
        old = leader()
        watcher = 1 if old != 1 else 2
        if watcher != 1:
            client = SyncClient(sb.topo.node(watcher).run_dir)
        return timed(lambda: sb.cut(old, "private"),
                     lambda: leader() not in (old, 0xFFFFFFFF), 30)
    finally:
        sb.down()


def fmt(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "never (within the limit)"
    missed = len(values) - len(got)
    text = f"{statistics.median(got):.2f} s"
    if len(got) > 1:
        text += f" ({min(got):.2f}-{max(got):.2f})"
    return text + (f", {missed} never" if missed else "")


def main() -> None:
    p = argparse.ArgumentParser(prog="bench.cluster")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="pctdb-bench-") as tmp:
        theirs = samba(args.repeats, Path(tmp))
    mine = ours(args.repeats)
    lost = leader_loss(args.repeats)
    print(f"{'measurement':<20} {'pyctdb (defaults)':<28} Samba CTDB 4.17 (defaults)")
    for key in mine:
        print(f"{key:<20} {fmt(mine[key]):<28} {fmt(theirs[key])}")
    print(f"{'leader cut, etcd':<20} {fmt(lost):<28} (not measured: CTDB's lock is a file here)")


if __name__ == "__main__":
    main()
