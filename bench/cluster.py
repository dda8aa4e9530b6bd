"""Cluster benchmark: start to all OK, how fast a failed node is seen, and how fast a lost
leader is replaced, beside CTDB.

    .venv/bin/python -m bench.cluster [--repeats N]

Every cluster has 3 nodes in network namespaces on this machine: ours a ctdb-sandbox at
its defaults; Samba's CTDB 4.17 in the bench's Samba lab twice, at its defaults and at
its fast stable tunables (``KeepaliveInterval=1``, ``KeepaliveLimit=2`` in
``ctdb.tunables``, ``[cluster] leader timeout = 2`` in ``ctdb.conf``).

"Detected" is when node 0 first reports the victim DISCONNECTED, polled every 10 ms (ours
through the local socket, Samba's with its ``ctdb nodestatus`` tool, ~12 ms per call),
after: a silent cut of its (private) network, a freeze (SIGSTOP), kill -9 of the node's
daemons.  The victim is node 2, or node 1 if node 2 leads.  The same three faults are
then applied to the current *leader*, one after the other: "new leader"
is when a surviving node first reports another node as leader, "agreed" when every
survivor reports the same new leader (ours: ClusterViewRequest; CTDB 4.17: ``ctdb
leader``, the 4.17 name of ``recmaster``).  No cluster lock is configured in either
(the sandbox's default; CTDB without a recovery lock): the survivors elect among
themselves, ours only with a majority of the nodes file.  Ours with ``--lock etcd`` is
the last row.  Prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ctdb.clusterd.messages import ClusterView, ClusterViewRequest
from ctdb.errors import CtdbError
from ctdb.protocol import NODE_CURRENT, Address, Service
from ctdb.sandbox.lab import Options, Sandbox, wait_for
from ctdb.sandbox.samba_ctdb import CTDBD, SambaCluster, SambaCtdbMissing, installed
from ctdb.transport.sync import SyncClient

POLL = 0.01
NO_NODE = 0xFFFFFFFF
FAULTS = ("kill -9", "cut", "freeze")
RUN_ORDER = ("cut", "freeze", "kill -9")  # a killed node takes CTDB ~30 s to rejoin: last
ROWS = ("start to all OK", *FAULTS,
        *(f"leader {f}: {what}" for f in FAULTS for what in ("new leader", "agreed")))
FAST_TUNABLES = "KeepaliveInterval=1\nKeepaliveLimit=2\n"
FAST_CONF = "[cluster]\n\tleader timeout = 2\n"

Results = dict[str, list[float | None]]
_LOG_LOCK = threading.Lock()
STOP = threading.Event()  # set when the run is abandoned: pending waits give up


def log(text: str) -> None:
    with _LOG_LOCK:  # two CTDB clusters run in threads
        print(f"[bench.cluster {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr,
              flush=True)


def empty() -> Results:
    return {key: [] for key in ROWS}


def timed(fault: Callable[[], None], seen: Callable[[], bool], limit: float) -> float | None:
    started = time.monotonic()
    fault()
    while time.monotonic() - started < limit:
        if STOP.is_set():
            raise RuntimeError("bench abandoned")
        if seen():
            return time.monotonic() - started
        time.sleep(POLL)
    return None


def timed_leader(fault: Callable[[], None], leaders: Callable[[], list[int | None]],
                 old: int, limit: float) -> tuple[float | None, float | None]:
    """After *fault*: (first time a survivor reports a leader other than *old*, first time
    every survivor reports the same one); ``leaders()`` gives each survivor's answer, None
    for unknown or no answer."""
    started = time.monotonic()
    fault()
    first: float | None = None
    while time.monotonic() - started < limit:
        if STOP.is_set():
            raise RuntimeError("bench abandoned")
        now_seen = leaders()
        elapsed = time.monotonic() - started
        new = [v for v in now_seen if v is not None and v != old]
        if new and first is None:
            first = elapsed
        if len(new) == len(now_seen) and len(set(new)) == 1:
            return first, elapsed
        time.sleep(POLL)
    return first, None


# -- ours -----------------------------------------------------------------------------


class OurViews:
    """ClusterViewRequest to each node's clusterd through its local socket."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.clients: dict[int, SyncClient] = {}

    def view(self, pnn: int) -> ClusterView | None:
        try:
            client = self.clients.get(pnn)
            if client is None:
                client = self.clients[pnn] = SyncClient(self.sb.topo.node(pnn).run_dir,
                                                        timeout=2)
            view = client.request(Address(NODE_CURRENT, Service.CLUSTERD),
                                  ClusterViewRequest(), timeout=2)
        except (CtdbError, OSError):
            stale = self.clients.pop(pnn, None)
            if stale is not None:
                stale.close()
            return None
        return view if isinstance(view, ClusterView) else None

    def leader(self, pnn: int) -> int | None:
        view = self.view(pnn)
        return None if view is None or view.leader == NO_NODE else int(view.leader)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()


def non_leader(leader: int, nodes: int = 3) -> int:
    """The victim of the non-leader faults: the highest PNN that does not lead (node 0
    watches it, as before; with node 0 leading that is node 2)."""
    return max(p for p in range(1, nodes) if p != leader)


def ours_sees_disconnected(sb: Sandbox, victim: int) -> Callable[[], bool]:
    client = SyncClient(sb.topo.node(0).run_dir)

    def check() -> bool:
        view = client.request(Address(NODE_CURRENT, Service.CLUSTERD), ClusterViewRequest())
        return any(n.pnn == victim and n.flags & 0x01 for n in view.nodes)

    return check


def ours_all_ok(sb: Sandbox, views: OurViews, timeout: float = 30.0) -> int:
    """Until every node reports all nodes OK (nodestatus) and one leader; that leader."""

    def agreed() -> int | None:
        if any(sb.ctdb(n.pnn, "nodestatus", "all", check=False, timeout=10).returncode != 0
               for n in sb.topo.nodes):
            return None
        leaders = {views.leader(n.pnn) for n in sb.topo.nodes}
        leader = leaders.pop() if len(leaders) == 1 else None
        return None if leader is None else leader + 1  # pnn 0 is falsy

    return wait_for("all pyctdb nodes OK with one leader", agreed, timeout) - 1


def ours(repeats: int) -> Results:
    out = empty()
    for _ in range(repeats):
        _ours_once(out)
    return out


def _ours_once(out: Results) -> None:
    sb = Sandbox(Options(name=f"bc{os.getpid() % 100000}", nodes=3))
    views = OurViews(sb)
    try:
        log("pyctdb: start, then faults on a non-leader")
        t0 = time.monotonic()
        sb.up()
        while sb.ctdb(0, "nodestatus", "all", check=False).returncode != 0:
            time.sleep(POLL)
        out["start to all OK"].append(time.monotonic() - t0)
        victim = non_leader(ours_all_ok(sb, views))
        seen = ours_sees_disconnected(sb, victim)
        out["cut"].append(timed(lambda: sb.cut(victim, "private"), seen, 60))
        sb.heal(victim)
        while seen():
            time.sleep(POLL)
        out["freeze"].append(timed(lambda: sb.freeze(victim), seen, 60))
        sb.thaw(victim)
        while seen():
            time.sleep(POLL)
        out["kill -9"].append(timed(lambda: sb.kill(victim), seen, 30))
        sb.start(victim)
        sb.wait_ready(victim)
        for fault in RUN_ORDER:
            log(f"pyctdb: leader {fault}")
            _ours_leader_fault(sb, views, fault, out)
    finally:
        views.close()
        sb.down()


def _ours_leader_fault(sb: Sandbox, views: OurViews, fault: str, out: Results) -> None:
    old = ours_all_ok(sb, views)
    survivors = [n.pnn for n in sb.topo.nodes if n.pnn != old]
    act: dict[str, Callable[[], None]] = {
        "kill -9": lambda: sb.kill(old),
        "cut": lambda: sb.cut(old, "private"),
        "freeze": lambda: sb.freeze(old),
    }
    first, agreed = timed_leader(act[fault], lambda: [views.leader(p) for p in survivors],
                                 old, 30)
    out[f"leader {fault}: new leader"].append(first)
    out[f"leader {fault}: agreed"].append(agreed)
    if fault == RUN_ORDER[-1]:
        return  # the last fault: the cluster is torn down next
    if fault == "cut":
        sb.heal(old)
    elif fault == "freeze":
        sb.thaw(old)
    else:
        sb.start(old)
        sb.wait_ready(old)


def leader_loss(repeats: int) -> list[float | None]:
    """With the etcd lock: cut the leader; time until another node reports a new leader."""
    return [_leader_loss_once() for _ in range(repeats)]


def _leader_loss_once() -> float | None:
    sb = Sandbox(Options(name=f"be{os.getpid() % 100000}", nodes=3, lock="etcd"))
    try:
        log("pyctdb --lock etcd: leader cut")
        sb.up()
        client = SyncClient(sb.topo.node(1).run_dir)

        def leader() -> int:
            view = client.request(Address(NODE_CURRENT, Service.CLUSTERD),
                                  ClusterViewRequest())
            return int(view.leader)

        while leader() == NO_NODE:
            time.sleep(POLL)
        old = leader()
        watcher = 1 if old != 1 else 2
        if watcher != 1:
            client = SyncClient(sb.topo.node(watcher).run_dir)
        return timed(lambda: sb.cut(old, "private"),
                     lambda: leader() not in (old, NO_NODE), 30)
    finally:
        sb.down()


# -- Samba's CTDB ------------------------------------------------------------------------


# Samba's ctdbd has fixed paths; the lab bind-mounts each node's directories over them in
# a private mount namespace.  The lab's own script mounts over the host's /run/ctdb, which
# another lab that created /run/ctdb removes when it stops (an rmdir on the host detaches
# the mounts on it in every namespace: our nodes lose their sockets mid-run).  Here each
# node gets a private tmpfs on /run instead, so no host directory is shared or touched.
_NODE_SCRIPT = (
    "mount -t tmpfs -o mode=0755 pctdb-run /run && mkdir /run/ctdb && "
    'mount --bind "$1" /etc/ctdb && '
    'mount --bind "$2" /var/lib/ctdb && '
    'mount --bind "$3" /run/ctdb && '
    f"exec {CTDBD} --interactive"
)


class LabSambaCluster(SambaCluster):
    """The Samba lab, its nodes with a private /run (see ``_NODE_SCRIPT``)."""

    def up(self, timeout: float = 90.0) -> None:
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
        with open(self.log(i), "ab") as err:
            self.procs[i] = subprocess.Popen(
                ["ip", "netns", "exec", self.lan.nodes[i],
                 "unshare", "--mount", "--propagation", "private",
                 "sh", "-c", _NODE_SCRIPT, "sh",
                 str(self.etc(i)), str(self.var(i)), str(self.run_dir(i))],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True)


class FastSambaCluster(LabSambaCluster):
    """Samba's CTDB at its fast stable tunables: a dead peer in KeepaliveInterval 1 s x
    (KeepaliveLimit 2 + 1) = 3 s, an election after 2 s without a leader broadcast."""

    def write_node(self, i: int) -> None:
        super().write_node(i)
        with open(self.etc(i) / "ctdb.conf", "a") as conf:
            conf.write(FAST_CONF)
        (self.etc(i) / "ctdb.tunables").write_text(FAST_TUNABLES)


def samba_sees_disconnected(peer: SambaCluster, victim: int) -> Callable[[], bool]:
    def check() -> bool:
        r = peer.ctdb(0, "nodestatus", str(victim), check=False)
        return "DISCONNECTED" in r.stdout

    return check


def samba_leader(peer: SambaCluster, i: int) -> int | None:
    """Node *i*'s answer to ``ctdb leader``; None when unknown or unanswered."""
    try:
        r = peer.ctdb(i, "leader", check=False, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    try:
        value = int(r.stdout.strip())
    except ValueError:
        return None
    return value if r.returncode == 0 and 0 <= value < peer.count else None


def samba_signal(peer: SambaCluster, i: int, sig: int) -> list[int]:
    """Send *sig* to node *i*'s ctdbd and its direct children; the pids signalled."""
    pids = [peer.pid(i), *peer.children(i).values()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids


def samba_restart(peer: SambaCluster, i: int) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        peer.stop(i)
    peer.start(i)


def samba(repeats: int, root: Path, fast: bool = False) -> Results:
    out = empty()
    for i in range(repeats):
        if fast:
            peer: SambaCluster = FastSambaCluster(root / f"f{i}", 3, tag=f"bcf{i}")
        else:
            peer = LabSambaCluster(root / f"s{i}", 3, tag=f"bc{i}")
        _samba_once(out, peer, "fast" if fast else "defaults")
    return out


def _samba_once(out: Results, peer: SambaCluster, label: str) -> None:
    try:
        log(f"CTDB ({label}): start, then faults on a non-leader")
        t0 = time.monotonic()
        peer.up()
        out["start to all OK"].append(time.monotonic() - t0)
        if isinstance(peer, FastSambaCluster):
            got = peer.ctdb(0, "getvar", "KeepaliveInterval").stdout.split()[-1]
            if got != "1":
                raise RuntimeError(f"CTDB did not take the fast tunables (KeepaliveInterval "
                                   f"{got}); logs in {peer.root}")
        victim = non_leader(samba_wait_leader(peer))
        seen = samba_sees_disconnected(peer, victim)
        out["cut"].append(timed(lambda: peer.lan.cut(victim), seen, 60))
        peer.lan.heal(victim)
        peer.wait_healthy()
        pids: list[int] = []

        def freeze() -> None:
            pids.extend(samba_signal(peer, victim, signal.SIGSTOP))

        out["freeze"].append(timed(freeze, seen, 60))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        peer.wait_healthy()

        def kill() -> None:
            samba_signal(peer, victim, signal.SIGKILL)

        out["kill -9"].append(timed(kill, seen, 60))
        samba_restart(peer, victim)
        for fault in RUN_ORDER:
            peer.wait_healthy()
            log(f"CTDB ({label}): leader {fault}")
            _samba_leader_fault(peer, fault, out)
    finally:
        peer.down()


def _samba_leader_fault(peer: SambaCluster, fault: str, out: Results) -> None:
    old = samba_wait_leader(peer)
    survivors = [i for i in range(peer.count) if i != old]
    pids: list[int] = []

    def act() -> None:
        if fault == "cut":
            peer.lan.cut(old)
        else:
            pids.extend(samba_signal(peer, old, signal.SIGKILL if fault == "kill -9"
                                     else signal.SIGSTOP))

    first, agreed = timed_leader(act, lambda: [samba_leader(peer, i) for i in survivors],
                                 old, 90)
    out[f"leader {fault}: new leader"].append(first)
    out[f"leader {fault}: agreed"].append(agreed)
    if fault == RUN_ORDER[-1]:
        return  # the last fault: the cluster is torn down next
    if fault == "cut":
        peer.lan.heal(old)
    elif fault == "freeze":
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    else:
        samba_restart(peer, old)


def samba_wait_leader(peer: SambaCluster) -> int:
    return wait_for("CTDB's nodes to agree on a leader",
                    lambda: _samba_agreed_leader(peer), 60, interval=0.2) - 1


def _samba_agreed_leader(peer: SambaCluster) -> int | None:
    leaders = {samba_leader(peer, i) for i in range(peer.count)}
    leader = leaders.pop() if len(leaders) == 1 else None
    return None if leader is None else leader + 1  # pnn 0 is falsy


# -- the table -------------------------------------------------------------------------------


def fmt(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not values:
        return "-"
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
    signal.signal(signal.SIGTERM, lambda signum, _f: sys.exit(128 + signum))
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="pctdb-bench-cluster-"))
    try:
        # CTDB's times are its timers' (seconds): both of its clusters run side by side,
        # each in its own namespaces, to keep the whole run within a few minutes.
        with ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(samba, args.repeats, work),
                    pool.submit(samba, args.repeats, work, True)]
            try:
                theirs, fast = (job.result() for job in jobs)
            except BaseException:
                STOP.set()
                raise
    except BaseException:
        log(f"failed; CTDB's logs kept in {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)
    mine = ours(args.repeats)
    lost = leader_loss(args.repeats)
    width = 27
    print(f"{'measurement':<{width}} {'pyctdb (defaults)':<24} {'CTDB 4.17 (defaults)':<24} "
          "CTDB 4.17 (fast tunables)")
    for key in ROWS:
        print(f"{key:<{width}} {fmt(mine[key]):<24} {fmt(theirs[key]):<24} {fmt(fast[key])}")
    print(f"{'leader cut, etcd lock':<{width}} {fmt(lost):<24} (not measured: CTDB's lock is "
          "a file here)")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(textwrap.fill(
        "'kill -9', 'cut', 'freeze': node 0 reports a non-leader (node 2, or 1 if 2 leads) "
        "DISCONNECTED. 'leader ...': the "
        "current leader is hit; 'new leader' = a survivor first reports another leader, "
        "'agreed' = every survivor reports the same one. No cluster lock (ours: majority "
        "vote; CTDB: no recovery lock), except the etcd row. CTDB fast tunables: "
        "KeepaliveInterval=1, KeepaliveLimit=2, [cluster] leader timeout = 2; its two "
        f"clusters ran side by side. Total {time.monotonic() - started:.0f} s, "
        f"loadavg at end {load}.", 92))


if __name__ == "__main__":
    main()
