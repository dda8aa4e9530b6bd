"""Public-address failover as a client sees it: pyctdb beside Samba's CTDB and keepalived.

    .venv/bin/python -m bench.failover [--repeats N] [--ctdb-slow-repeats M]

Three implementations, each 3 nodes with 3 public IPv4 addresses at their defaults, up
side by side in one run (their trials interleave, so they share the machine's noise):

* **pyctdb**: ``Sandbox(Options(name="bfp…", nodes=3, public_ips=3))``, netns backend.
  Addresses are held behind failoverd's nftables gate (``IPGateMs`` 300 ms).
* **Samba CTDB 4.17** at its defaults, with ``public_addresses`` on a public network and a
  client namespace: :class:`bench.services.PublicPeer` (what ``bench.services`` uses,
  without smbd).
* **keepalived** (Debian's package; ``apt-get install keepalived``), run by hand in every
  node's namespace (``keepalived --vrrp --dont-fork --log-console`` with its own config
  and pid files, no scripts): one VRRP instance per address, its home node MASTER at
  priority 150, the others BACKUP at 100 and 90.  Twice: **defaults** (VRRPv2,
  ``advert_int 1``) and **fast** (``vrrp_version 3``, ``advert_int 0.1``: VRRPv3 counts
  centiseconds).  Each keepalived cluster has a lab of its own, built by the sandbox's
  network builder (:func:`ctdb.sandbox.network.build`: a private and a public bridge,
  a client namespace).

Every node namespace of the four clusters has a TCP listener on port 9445 (sockets this
process opens inside the namespaces, served by one thread, so freezing a node does not
freeze them: its kernel still completes handshakes for the addresses it answers for).

**Faults**, on the node holding address A (for pyctdb and CTDB never their leader):

* ``graceful``: ``ctdb disable`` (pyctdb's or Samba's tool, run from here: its start is
  counted, the victim serving meanwhile); keepalived: SIGTERM, after which it sends a
  priority-0 advertisement and drops its addresses.  Restored with ``ctdb enable`` /
  starting keepalived again.
* ``freeze``: SIGSTOP of every process in the node's network namespace (``sb.freeze`` for
  pyctdb; the same function for the others: ctdbd and all its children, keepalived's two
  processes).  The node's kernel still answers ARP and TCP for addresses it has unless
  the implementation prevents it.  Restored with SIGCONT.
* ``cut``: the node's ports taken off both bridges (``sb.cut``; for the others the same
  ``ip link set PORT nomaster`` on their switch namespace): silent, carrier stays up.
  Restored by putting them back.

**What is timed**: :mod:`bench.failover_probe` in the client namespace, started before
the fault, starts a connect to ``A:9445`` every 2 ms and reports the first that another
node answered (told by the client's ARP entry for A); the time is from just before the
fault.  The neighbour entry for A is flushed and one connect made (it must reach the
victim) before each trial.  Then, with the fault still on for ``HOLD`` seconds and on
through the restore until the cluster is steady again, the probe goes on (``--follow``)
and its ARP watcher (``--arp-iface``) asks who answers ARP for A every 20 ms from a
spare address, without touching the client's neighbour table.  Reported per trial:

* ``dup``: connects the old holder answered after the new one had, fault still on
  (possible only if the client's entry flips back), and for how long the old holder
  still answered ARP for A after another node had (the "two holders" window, fault on);
* ``overlap``: time during which two nodes answered the same ARP request, anywhere in
  the trial (also during the restore: a healed or thawed node that still has A);
* ``gap after restore``: the longest run of unanswered connects after the restore.

The table, per fault and implementation: trials, median/min/max from the fault to
another node's first answer and the ratio of medians to pyctdb's; "victim last": the
victim's last answer to the probe after the fault (graceful: until it released A, so the
client's outage is the difference, printed under the table: the time to start the
``ctdb`` tool, ~0.1 s for pyctdb's Python one, delays the release but is no outage;
freeze: how long the frozen node's kernel kept completing handshakes); the duplicates
and the restore.  Then one line per trial and the machine.

Trials interleave: every round runs each fault on each cluster in turn.  Samba CTDB's
freeze and cut take ~30 s each at its defaults (detection ~25 s) plus ~13 s to settle
after the restore, so they run ``--ctdb-slow-repeats`` times (default 1), its graceful
fault ``--repeats`` times; ``--repeats 3`` takes about 4 minutes.

Steady state (waited for with deadlines before each trial and after each restore):
pyctdb and CTDB: every node OK and one address per node; keepalived: every node holds
exactly its home address.  Everything is removed at the end, also on failure or SIGTERM:
the sandbox, the Samba cluster, keepalived (by pid, then whatever is left in its
namespaces) and all namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from bench import measure
from bench.services import Ours, Probe, PublicPeer, iface_mac, wait_until
from ctdb.sandbox import network
from ctdb.sandbox.lab import Options, Sandbox
from ctdb.sandbox.netns import setns, sh
from ctdb.sandbox.samba_ctdb import installed as ctdb_installed
from ctdb.sandbox.topology import STATE_ROOT, Topology, plan

PORT = 9445  # the TCP service every node offers on every address
HOLD = 0.5  # seconds the fault stays on after another node answered (duplicates?)
AFTER = 0.3  # seconds the probe goes on after the restored cluster is steady
RESTORE_LIMIT = 60.0
SETTLE_LIMIT = 90.0
FAULTS = ("graceful", "freeze", "cut")
FAULT_TITLES = {
    "graceful": "graceful: ctdb disable (keepalived: SIGTERM, priority-0 advertisement)",
    "freeze": "freeze: SIGSTOP of every process of the node",
    "cut": "silent cut: the node's bridge ports detached (private and public)",
}
KEEPALIVED = "/usr/sbin/keepalived"


def log(text: str) -> None:
    print(f"[bench.failover {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


# -- namespaces, listeners, the client ------------------------------------------------------


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """The calling thread in namespace *name* for the duration (its sockets stay there)."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            setns(target)
            try:
                yield
            finally:
                setns(original)
        finally:
            os.close(target)
    finally:
        os.close(original)


class Listeners:
    """A TCP listener on PORT in each given namespace, served by one thread of ours."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.stop_r, self.stop_w = os.pipe()
        self.sel.register(self.stop_r, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._serve, name="bf-listeners", daemon=True)

    def add(self, netns: str) -> None:
        with in_netns(netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", PORT))  # noqa: S104 (inside a lab namespace)
        sock.listen(4096)
        sock.setblocking(False)
        self.socks.append(sock)
        self.sel.register(sock, selectors.EVENT_READ)

    def start(self) -> None:
        self.thread.start()

    def _serve(self) -> None:
        while True:
            for key, _ev in self.sel.select():
                if key.fileobj == self.stop_r:
                    return
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with contextlib.suppress(OSError):
                    while True:
                        conn, _addr = sock.accept()
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                        conn.close()

    def close(self) -> None:
        os.write(self.stop_w, b"x")
        if self.thread.is_alive():
            self.thread.join(5)
        for sock in self.socks:
            sock.close()
        self.sel.close()
        os.close(self.stop_r)
        os.close(self.stop_w)


def neigh_mac(client: str, address: str) -> str | None:
    out = sh("ip", "-n", client, "-j", "neigh", "show", address, check=False).stdout
    with contextlib.suppress(ValueError):
        for entry in json.loads(out or "[]"):
            if entry.get("lladdr"):
                return str(entry["lladdr"]).lower()
    return None


def served_by(client: str, address: str) -> str | None:
    """Flush the client's neighbour entry for *address*, connect once: the MAC that
    answered (None: no answer)."""
    sh("ip", "-n", client, "neigh", "flush", "to", address, check=False)
    with in_netns(client):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(1.0)
        sock.connect((address, PORT))
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    return neigh_mac(client, address)


def spare_address(client_ip: str) -> str:
    """An address of the client's /24 nobody uses: the ARP watcher's sender address."""
    return client_ip.rsplit(".", 1)[0] + ".251"


class FollowProbe(Probe):
    """:class:`bench.services.Probe` with ``--follow`` and the ARP watcher."""

    def __init__(self, client: str, client_ip: str, address: str, victim_mac: str,
                 limit: float) -> None:
        super().__init__(client, address, victim_mac, port=PORT, limit=limit,
                         extra=["--follow", "--arp-iface", "eth0",
                                "--arp-source", spare_address(client_ip)])

    def first(self) -> dict[str, Any]:
        line = self._line(self.limit + 10)
        if not line:
            raise RuntimeError("the failover probe gave no result")
        data: dict[str, Any] = json.loads(line)
        return data

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        line = self._line(15.0)
        self.close()
        if not line:
            raise RuntimeError("the failover probe gave no timelines")
        data: dict[str, Any] = json.loads(line)
        return data


# -- the three implementations --------------------------------------------------------------


class Cluster(Protocol):
    key: str
    label: str
    client: str
    client_ip: str
    last_leader: int | None

    def namespaces(self) -> list[str]: ...
    def settled(self) -> bool: ...
    def pick(self, n: int) -> tuple[int, str]: ...
    def mac(self, victim: int) -> str: ...
    def limit(self, fault: str) -> float: ...
    def inject(self, fault: str, victim: int) -> None: ...
    def restore(self, fault: str, victim: int) -> None: ...
    def release_all(self) -> None: ...


def _rotate(candidates: list[int], n: int) -> int:
    return sorted(candidates)[n % len(candidates)]


class PyCtdb:
    key = "pyctdb"
    label = "pyctdb (gate 300 ms)"

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.ours = Ours(sb)
        self.client = sb.topo.client
        self.client_ip = sb.topo.client_ip
        self.last_leader: int | None = None

    def namespaces(self) -> list[str]:
        return [n.netns for n in self.sb.topo.nodes]

    def settled(self) -> bool:
        view = self.ours.view()
        if any(n.flags for n in view.nodes) or view.recovery_mode:
            return False
        hosts = list(self.ours.ips().values())
        return None not in hosts and sorted(h for h in hosts if h is not None) == sorted(
            n.pnn for n in view.nodes)

    def pick(self, n: int) -> tuple[int, str]:
        leader = self.last_leader = int(self.ours.view().leader)
        ips = self.ours.ips()
        victim = _rotate([h for h in set(ips.values()) if h is not None and h != leader], n)
        return victim, min(a for a, h in ips.items() if h == victim)

    def mac(self, victim: int) -> str:
        return iface_mac(self.sb.topo.node(victim).netns, "eth1")

    def limit(self, fault: str) -> float:
        return 15.0

    def inject(self, fault: str, victim: int) -> None:
        if fault == "graceful":
            self.sb.ctdb(victim, "disable")
        elif fault == "freeze":
            self.sb.freeze(victim)
        else:
            self.sb.cut(victim)

    def restore(self, fault: str, victim: int) -> None:
        if fault == "graceful":
            self.sb.ctdb(victim, "enable")
        elif fault == "freeze":
            self.sb.thaw(victim)
        else:
            self.sb.heal(victim)

    def release_all(self) -> None:
        for node in self.sb.topo.nodes:
            with contextlib.suppress(Exception):
                self.sb.thaw(node.pnn)
        with contextlib.suppress(Exception):
            self.sb.heal()


class SambaCtdb:
    key = "ctdb"
    label = "Samba CTDB 4.17"

    def __init__(self, peer: PublicPeer) -> None:
        self.peer = peer
        self.client = peer.lan.client
        self.client_ip = peer.lan.client_ip
        self.last_leader: int | None = None

    def namespaces(self) -> list[str]:
        return list(self.peer.lan.nodes)

    def settled(self) -> bool:
        return self.peer.settled()

    def leader(self) -> int | None:
        out = self.peer.ctdb(0, "leader", check=False, timeout=10).stdout.strip()
        return int(out) if out.isdigit() else None

    def pick(self, n: int) -> tuple[int, str]:
        leader = self.last_leader = self.leader()
        if leader is None:
            raise RuntimeError("Samba CTDB names no leader")
        hosts = self.peer.ip_hosts()
        victim = _rotate([h for h in set(hosts.values()) if h is not None and h != leader], n)
        return victim, min(a for a, h in hosts.items() if h == victim)

    def mac(self, victim: int) -> str:
        return iface_mac(self.peer.lan.nodes[victim], "eth1")

    def limit(self, fault: str) -> float:
        return 20.0 if fault == "graceful" else 60.0

    def _ports(self, victim: int, attach: bool) -> None:
        br = self.peer.lan.bridge
        for port, bridge in ((f"p{victim}", "br0"), (f"q{victim}", "br1")):
            sh("ip", "-n", br, "link", "set", port, *(("master", bridge) if attach
                                                       else ("nomaster",)))

    def inject(self, fault: str, victim: int) -> None:
        if fault == "graceful":
            self.peer.ctdb(victim, "disable")
        elif fault == "freeze":
            network.kill_all(self.peer.lan.nodes[victim], signal.SIGSTOP)
        else:
            self._ports(victim, attach=False)

    def restore(self, fault: str, victim: int) -> None:
        if fault == "graceful":
            self.peer.ctdb(victim, "enable")
        elif fault == "freeze":
            network.kill_all(self.peer.lan.nodes[victim], signal.SIGCONT)
        else:
            self._ports(victim, attach=True)

    def release_all(self) -> None:
        for i, ns in enumerate(self.peer.lan.nodes):
            with contextlib.suppress(Exception):
                network.kill_all(ns, signal.SIGCONT)
            with contextlib.suppress(Exception):
                self._ports(i, attach=True)


class Keepalived:
    """keepalived in every node of a lab of its own; see the module's docstring."""

    PRIORITIES = (150, 100, 90)  # home node, the next, the one after

    def __init__(self, name: str, index: int, work: Path, fast: bool) -> None:
        self.fast = fast
        self.key = "keepalived-fast" if fast else "keepalived"
        self.label = ("keepalived fast (v3, 0.1 s)" if fast
                      else "keepalived defaults (1 s)")
        self.topo: Topology = plan(name, 3, 3, index=index)
        self.work = work / name
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.client = self.topo.client
        self.client_ip = self.topo.client_ip
        self.last_leader: int | None = None  # VRRP has none

    def namespaces(self) -> list[str]:
        return [n.netns for n in self.topo.nodes]

    def config(self, pnn: int) -> str:
        lines = ["global_defs {", f"    router_id {self.topo.name}-n{pnn}"]
        if self.fast:
            lines.append("    vrrp_version 3")
        lines.append("}")
        count = len(self.topo.nodes)
        for k, address in enumerate(self.topo.public_ips):
            rank = (pnn - k) % count
            lines += [
                f"vrrp_instance addr{k} {{",
                f"    state {'MASTER' if rank == 0 else 'BACKUP'}",
                "    interface eth1",
                f"    virtual_router_id {20 + k}",
                f"    priority {self.PRIORITIES[min(rank, len(self.PRIORITIES) - 1)]}",
                f"    advert_int {'0.1' if self.fast else '1'}",
                "    virtual_ipaddress {",
                f"        {address}/24 dev eth1",
                "    }",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def up(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        network.build(self.topo)
        for node in self.topo.nodes:
            (self.work / f"n{node.pnn}.conf").write_text(self.config(node.pnn))
            self.start(node.pnn)

    def start(self, pnn: int) -> None:
        node = self.topo.node(pnn)
        d = self.work
        with open(d / f"n{pnn}.log", "ab") as out:
            self.procs[pnn] = subprocess.Popen(
                ["ip", "netns", "exec", node.netns, KEEPALIVED,
                 "--use-file", str(d / f"n{pnn}.conf"), "--vrrp", "--dont-fork",
                 "--log-console", "--log-detail", "--no-syslog",
                 "--pid", str(d / f"n{pnn}.pid"), "--vrrp_pid", str(d / f"n{pnn}.vrrp.pid"),
                 "--checkers_pid", str(d / f"n{pnn}.checkers.pid")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def stop(self, pnn: int, timeout: float = 5.0) -> None:
        proc = self.procs.pop(pnn, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # the VRRP child, should it outlive its parent
        network.kill_all(self.topo.node(pnn).netns, signal.SIGKILL)

    def held(self, pnn: int) -> list[str]:
        out = sh("ip", "-n", self.topo.node(pnn).netns, "-4", "-j", "addr", "show",
                 "dev", "eth1").stdout
        public = set(self.topo.public_ips)
        return sorted(a["local"] for link in json.loads(out or "[]")
                      for a in link.get("addr_info", []) if a.get("local") in public)

    def settled(self) -> bool:
        for node in self.topo.nodes:
            proc = self.procs.get(node.pnn)
            if proc is None or proc.poll() is not None:
                raise RuntimeError(f"keepalived on {node.netns} is not running")
            if self.held(node.pnn) != [self.topo.public_ips[node.pnn]]:
                return False
        return True

    def pick(self, n: int) -> tuple[int, str]:
        victim = n % len(self.topo.nodes)
        return victim, self.topo.public_ips[victim]

    def mac(self, victim: int) -> str:
        return iface_mac(self.topo.node(victim).netns, "eth1")

    def limit(self, fault: str) -> float:
        return 15.0

    def inject(self, fault: str, victim: int) -> None:
        node = self.topo.node(victim)
        if fault == "graceful":
            self.procs[victim].send_signal(signal.SIGTERM)
        elif fault == "freeze":
            network.kill_all(node.netns, signal.SIGSTOP)
        else:
            network.cut(self.topo, node)

    def restore(self, fault: str, victim: int) -> None:
        node = self.topo.node(victim)
        if fault == "graceful":
            self.procs.pop(victim).wait(10)
            self.start(victim)
        elif fault == "freeze":
            network.kill_all(node.netns, signal.SIGCONT)
        else:
            network.heal(self.topo, node)

    def release_all(self) -> None:
        for node in self.topo.nodes:
            with contextlib.suppress(Exception):
                network.kill_all(node.netns, signal.SIGCONT)
            with contextlib.suppress(Exception):
                network.heal(self.topo, node)

    def down(self) -> None:
        for node in self.topo.nodes:
            with contextlib.suppress(Exception):
                network.kill_all(node.netns, signal.SIGCONT)
            with contextlib.suppress(Exception):
                self.stop(node.pnn)
        network.teardown(self.topo.prefix)


# -- a trial --------------------------------------------------------------------------------


@dataclass
class Trial:
    impl: str
    fault: str
    victim: int
    address: str
    seconds: float | None = None  # fault to another node's first answer
    outage: float | None = None  # the victim's last answer (or the fault) to that
    victim_until: float | None = None  # fault to the victim's last answer (None: none)
    leader: int | None = None  # the cluster's leader when the trial began
    dup_connects: int = 0  # the old holder answered connects after the new one, fault on
    arp_dup: float = 0.0  # s the old holder still answered ARP after another had, fault on
    overlap: float = 0.0  # s two nodes answered the same ARP request, fault on
    overlap_restore: float = 0.0  # the same from the restore to the end
    restore_gap: float = 0.0  # longest run of unanswered connects after the restore
    restored: float | None = None  # restore to steady state
    note: str = ""
    probe: dict[str, Any] = field(default_factory=dict)


def _segments(timeline: list[list[Any]], end: float) -> Iterator[tuple[float, float, Any]]:
    for i, (t, state) in enumerate(timeline):
        until = timeline[i + 1][0] if i + 1 < len(timeline) else end
        yield float(t), float(until), state


def _clip(start: float, until: float, lo: float, hi: float) -> float:
    return max(0.0, min(until, hi) - max(start, lo))


def analyse(trial: Trial, follow: dict[str, Any], victim_mac: str, t_restore: float) -> None:
    end = float(follow.get("end", t_restore))
    first_other = follow.get("t")
    if first_other is not None:
        trial.dup_connects = sum(1 for t in follow.get("victim_after_other", [])
                                 if first_other < t < t_restore)
    arp = follow.get("arp", [])
    first_other_arp = next((float(t) for t, macs in arp
                            if any(m != victim_mac for m in macs)), None)
    for start, until, macs in _segments(arp, end):
        if len(macs) >= 2:
            trial.overlap += _clip(start, until, 0.0, t_restore)
            trial.overlap_restore += _clip(start, until, t_restore, end)
        if first_other_arp is not None and victim_mac in macs:
            trial.arp_dup += _clip(start, until, first_other_arp, t_restore)
    for start, until, outcome in _segments(follow.get("connects", []), end):
        if outcome == "unanswered":
            trial.restore_gap = max(trial.restore_gap, _clip(start, until, t_restore, end))


def run_trial(cluster: Cluster, fault: str, n: int) -> Trial:
    wait_until(f"{cluster.label} to be steady", cluster.settled, SETTLE_LIMIT, 0.1)
    victim, address = cluster.pick(n)
    mac = cluster.mac(victim)
    wait_until(f"{cluster.label}: {address} to be served by node {victim}",
               lambda: served_by(cluster.client, address) == mac, 10, 0.1)
    trial = Trial(cluster.key, fault, victim, address, leader=cluster.last_leader)
    probe = FollowProbe(cluster.client, cluster.client_ip, address, mac, cluster.limit(fault))
    restored = False
    try:
        probe.go()
        t0 = time.monotonic()
        cluster.inject(fault, victim)
        first = probe.first()
        trial.probe = first
        if first.get("t") is not None:
            trial.seconds = float(first["t"]) - t0
            last = first.get("last_victim_answer")
            trial.outage = float(first["t"]) - max(t0, float(last) if last else t0)
        last = first.get("last_victim_answer")
        if last is not None and float(last) >= t0:
            trial.victim_until = float(last) - t0
        time.sleep(HOLD)
        t_restore = time.monotonic()
        cluster.restore(fault, victim)
        restored = True
        try:
            trial.restored = wait_until(f"{cluster.label} to be steady again",
                                        cluster.settled, RESTORE_LIMIT, 0.1)
        except TimeoutError as exc:
            trial.note = str(exc)
        time.sleep(AFTER)
        follow = probe.stop()
        trial.probe["follow"] = follow
        analyse(trial, follow, mac, t_restore)
    finally:
        probe.close()
        if not restored:
            with contextlib.suppress(Exception):
                cluster.restore(fault, victim)
    seconds = "never" if trial.seconds is None else f"{trial.seconds * 1000:.0f} ms"
    log(f"{cluster.label} {fault}: node {victim} {address}: {seconds}"
        + (f", restored in {trial.restored:.1f} s" if trial.restored is not None else "")
        + describe_dups(trial) + (f" ({trial.note})" if trial.note else ""))
    return trial


def describe_dups(t: Trial) -> str:
    parts = []
    if t.dup_connects:
        parts.append(f"{t.dup_connects} connects answered by the old holder after the new one")
    if t.arp_dup:
        whole = " (all the time the fault was kept on)" if t.arp_dup > HOLD - 0.05 else ""
        parts.append(f"old holder answered ARP for {t.arp_dup * 1000:.0f} ms after the new "
                     f"one{whole}")
    if t.overlap:
        parts.append(f"2 nodes answered ARP for {t.overlap * 1000:.0f} ms (fault on)")
    if t.overlap_restore:
        parts.append(f"2 nodes answered ARP for {t.overlap_restore * 1000:.0f} ms "
                     "after the restore")
    if t.restore_gap >= 0.1:
        parts.append(f"unanswered for {t.restore_gap * 1000:.0f} ms after the restore")
    return "; " + "; ".join(parts) if parts else ""


# -- the run --------------------------------------------------------------------------------


@dataclass
class Plan:
    repeats: int
    ctdb_slow_repeats: int

    def count(self, cluster: Cluster, fault: str) -> int:
        if cluster.key == "ctdb" and fault != "graceful":
            return self.ctdb_slow_repeats
        return self.repeats


def run_trials(clusters: list[Cluster], plan_: Plan) -> list[Trial]:
    trials: list[Trial] = []
    broken: set[str] = set()
    for r in range(max(plan_.repeats, plan_.ctdb_slow_repeats)):
        for fault in FAULTS:
            for cluster in clusters:
                if r >= plan_.count(cluster, fault) or cluster.key in broken:
                    continue
                try:
                    trials.append(run_trial(cluster, fault, r))
                except (TimeoutError, RuntimeError, OSError, subprocess.SubprocessError,
                        AssertionError) as exc:
                    log(f"{cluster.label} {fault}: trial failed: {exc}; no more trials of it")
                    broken.add(cluster.key)
                    trials.append(Trial(cluster.key, fault, -1, "", note=f"failed: {exc}"))
    return trials


def _fmt_ms(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:>9.0f} {min(values) * 1000:>10.0f} "
            f"{max(values) * 1000:>10.0f}")


def table(trials: list[Trial], clusters: list[Cluster]) -> str:
    out: list[str] = []
    labels = {c.key: c.label for c in clusters}
    for fault in FAULTS:
        out.append(f"{FAULT_TITLES[fault]}")
        out.append(f"  {'':<28} {'':>2} {'fault to another node answering':>31} "
                   f"{'':>9} {'victim':>7}  two holders (fault on) / after restore")
        out.append(f"  {'implementation':<28} {'n':>2} {'median':>9} {'min':>10} {'max':>10}"
                   f" {'vs pyctdb':>9} {'last':>7}  trials, ARP overlap / ARP overlap, gap")
        base = [t.seconds for t in trials if t.impl == "pyctdb" and t.fault == fault
                and t.seconds is not None]
        base_median = statistics.median(base) if base else None
        outages: list[str] = []
        for c in clusters:
            got = [t for t in trials if t.impl == c.key and t.fault == fault]
            if not got:
                continue
            ok = [t.seconds for t in got if t.seconds is not None]
            missed = len(got) - len(ok)
            until = [t.victim_until for t in got if t.victim_until is not None]
            last = f"{statistics.median(until) * 1000:.0f}" if until else "-"
            dup_trials = sum(1 for t in got if t.dup_connects or t.arp_dup or t.overlap)
            dups = f"{dup_trials}/{len(got)}"
            if dup_trials:
                dups += (f", {max(t.overlap for t in got) * 1000:.0f} ms"
                         + (f", {sum(t.dup_connects for t in got)} connects"
                            if any(t.dup_connects for t in got) else ""))
            dups += (f" / {max(t.overlap_restore for t in got) * 1000:.0f} ms, "
                     f"{max(t.restore_gap for t in got) * 1000:.0f} ms")
            if ok:
                ratio = ("1.0x" if c.key == "pyctdb" else
                         f"{statistics.median(ok) / base_median:.1f}x" if base_median else "-")
                line = (f"  {labels[c.key]:<28} {len(ok):>2} {_fmt_ms(ok)} {ratio:>9} "
                        f"{last:>7}  {dups}")
            else:
                line = f"  {labels[c.key]:<28} {0:>2} {'-':>9}"
            if missed:
                line += f"  [{missed} never]"
            out.append(line)
            got_outages = [t.outage for t in got if t.outage is not None]
            if got_outages:
                outages.append(f"{labels[c.key]} {statistics.median(got_outages) * 1000:.0f}")
        if fault == "graceful" and outages:
            out.append("  client outage (victim's last answer to another node's first), "
                       "median ms: " + ", ".join(outages))
        out.append("")
    out.append(f"(ms; \"victim last\": its last answer to the probe after the fault; two "
               f"holders: trials where the old holder still answered ARP or connects after "
               f"another node had, and the longest time two nodes answered one ARP request, "
               f"with the fault kept on {HOLD * 1000:.0f} ms after the move; after restore: "
               f"the longest ARP overlap and the longest run of unanswered connects)")
    return "\n".join(out)


def lab_index(exclude: set[int]) -> int:
    """A 198.18.0.0/15 block index no live sandbox and none of ours uses (the labs are
    isolated namespaces: this only keeps addresses distinct for whoever reads them)."""
    used = set(exclude)
    for state in STATE_ROOT.glob("*/state.json"):
        with contextlib.suppress(OSError, ValueError):
            used.add(int(json.loads(state.read_text()).get("index", 0)))
    return next(i for i in range(100) if i not in used)


@contextlib.contextmanager
def samba_ctdb(work: Path, enabled: bool) -> Iterator[tuple[PublicPeer | None,
                                                             Callable[[], None]]]:
    """Samba's CTDB brought up in a thread; *join* waits for it (raises its error)."""
    if not enabled:
        yield None, lambda: None
        return
    peer = PublicPeer(work / "samba", tag="bfc")
    errors: list[BaseException] = []

    def bring_up() -> None:
        try:
            t0 = time.monotonic()
            peer.up(timeout=120)
            wait_until("Samba CTDB to settle", peer.settled, 90, 0.5)
            log(f"Samba CTDB all OK, one address per node, after {time.monotonic() - t0:.1f} s")
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    thread = threading.Thread(target=bring_up, name="bf-samba-ctdb-up", daemon=True)
    thread.start()

    def join() -> None:
        thread.join(240)
        if errors:
            raise errors[0]
        if thread.is_alive():
            raise TimeoutError("Samba CTDB did not come up")

    try:
        yield peer, join
    finally:
        thread.join(240)
        peer.down()


def run(plan_: Plan, work: Path, want_ctdb: bool, want_keepalived: bool,
        clusters: list[Cluster]) -> list[Trial]:
    pid = os.getpid() % 100000
    labs: list[Keepalived] = []
    listeners = Listeners()
    try:
        with samba_ctdb(work, want_ctdb) as (peer, join_peer), \
                Sandbox(Options(name=f"bfp{pid}", nodes=3, public_ips=3)) as sb:
            ours = PyCtdb(sb)
            t0 = time.monotonic()
            wait_until("pyctdb to settle", ours.settled, SETTLE_LIMIT, 0.1)
            log(f"pyctdb sandbox bfp{pid} settled {time.monotonic() - t0:.1f} s after up")
            clusters.append(ours)
            if want_keepalived:
                used = {sb.topo.index}
                for fast in (False, True):
                    index = lab_index(used)
                    used.add(index)
                    lab = Keepalived(f"bf{'f' if fast else 'k'}{pid}", index, work, fast)
                    labs.append(lab)
                    lab.up()
            for lab in labs:
                wait_until(f"{lab.label} to settle", lab.settled, 30, 0.1)
                clusters.append(lab)
            if peer is not None:
                try:
                    join_peer()
                    clusters.append(SambaCtdb(peer))
                except (TimeoutError, RuntimeError, AssertionError, OSError) as exc:
                    log(f"Samba CTDB did not come up ({exc}): measured without it")
            for c in clusters:
                for ns in c.namespaces():
                    listeners.add(ns)
            listeners.start()
            try:
                return run_trials(clusters, plan_)
            finally:
                for c in clusters:
                    c.release_all()
    finally:
        listeners.close()
        for lab in labs:
            lab.down()


def leftovers() -> list[str]:
    pid = os.getpid()
    names = [ns for ns in network.namespaces()
             if ns.startswith((f"pctdb-bfp{pid % 100000}-", f"pctdb-bfk{pid % 100000}-",
                               f"pctdb-bff{pid % 100000}-", f"pctdbt-{pid}-bfc-"))]
    keep = subprocess.run(["pgrep", "-f", f"{tempfile.gettempdir()}/pctdbf-{pid}-"],
                          capture_output=True, text=True, check=False).stdout.split()
    return names + [f"pid {p}" for p in keep]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.failover")
    p.add_argument("--repeats", type=int, default=3, help="trials per fault and cluster")
    p.add_argument("--ctdb-slow-repeats", type=int, default=1,
                   help="trials of Samba CTDB's freeze and cut (each ~30 s)")
    p.add_argument("--no-ctdb", action="store_true", help="leave Samba's CTDB out")
    p.add_argument("--no-keepalived", action="store_true", help="leave keepalived out")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.ctdb_slow_repeats < 0:
        p.error("--repeats must be at least 1")
    if os.geteuid() != 0:
        print("bench.failover: needs root (network namespaces)", file=sys.stderr)
        return 1
    want_ctdb = not args.no_ctdb and ctdb_installed()
    if not args.no_ctdb and not want_ctdb:
        log("Samba's CTDB is not installed (apt-get install ctdb): measured without it")
    want_keepalived = not args.no_keepalived and Path(KEEPALIVED).exists()
    if not args.no_keepalived and not want_keepalived:
        log("keepalived is not installed (apt-get install keepalived): measured without it")
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    info = measure.machine()
    if want_keepalived:
        version = subprocess.run([KEEPALIVED, "--version"], capture_output=True, text=True,
                                 check=False)
        info["keepalived"] = (version.stdout + version.stderr).split("\n", 1)[0].strip()
    info["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info["command"] = " ".join([".venv/bin/python -m bench.failover", *sys.argv[1:]])
    started = time.monotonic()
    cpu_before = measure.cpu_snapshot()
    work = Path(tempfile.mkdtemp(prefix=f"pctdbf-{os.getpid()}-"))
    clusters: list[Cluster] = []
    ok = False
    try:
        trials = run(Plan(args.repeats, args.ctdb_slow_repeats), work, want_ctdb,
                     want_keepalived, clusters)
        ok = True
    finally:
        left = leftovers()
        if left:
            log(f"left behind: {', '.join(left)}")
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"failed; logs kept in {work}")
    measure.finish_context(info, started, cpu_before)
    print(table(trials, clusters))
    print(details(trials, clusters, args.ctdb_slow_repeats))
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    return 0


def details(trials: list[Trial], clusters: list[Cluster], ctdb_slow_repeats: int) -> str:
    """One line per trial."""
    out = []
    labels = {c.key: c.label for c in clusters}
    for t in trials:
        probe = t.probe
        seconds = "never" if t.seconds is None else f"{t.seconds * 1000:7.1f} ms"
        leader = "" if t.leader is None else f", leader {t.leader}"
        out.append(f"  {labels.get(t.impl, t.impl):<28} {t.fault:<8} node {t.victim} "
                   f"{t.address:<14} {seconds}  ({probe.get('attempts', 0)} connects, "
                   f"{probe.get('unanswered', 0)} unanswered, "
                   f"{probe.get('victim_answers', 0)} by the victim{leader})"
                   + (f", steady {t.restored:.1f} s after the restore"
                      if t.restored is not None else "")
                   + describe_dups(t) + (f"  [{t.note}]" if t.note else ""))
    if any(t.impl == "ctdb" and t.fault != "graceful" for t in trials):
        out.append(f"  (Samba CTDB's freeze and cut: {ctdb_slow_repeats} trial(s) each; its "
                   "detection takes ~25 s at its defaults)")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
