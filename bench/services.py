"""SMB service failure to failover: how long until another node serves the address.

    .venv/bin/python -m bench.services [--repeats N] [--ctdb-repeats M]

Both clusters have 3 nodes and 3 public addresses, smbd on every node, and run side by
side in the same run (their trials interleave, so they share the machine's noise):

* **pyctdb**: a ctdb-sandbox on the nspawn backend with ``--services smb``, at its
  defaults: each node's own systemd runs smbd.service, serviced watches the unit through
  systemd's D-Bus signals and marks the node UNHEALTHY the moment it stops, failoverd
  moves the node's addresses.  Two failures: ``systemctl stop smbd.service`` inside the
  node (through ``nsenter``, whose ~4 ms start is counted in the time), and ``kill -9``
  of smbd's main pid (``systemctl show -p MainPID``, translated to the host's pid and
  killed from here).
* **Samba CTDB 4.17** at its defaults (:class:`~ctdb.sandbox.samba_ctdb.SambaCluster`,
  plus a public network, a client namespace and ``public_addresses`` on ``eth1``), with
  smbd started by hand in every node's network namespace (``smbd --foreground
  --no-process-group -s CONF``, per-node private/lock/state/cache/pid/ncalrpc
  directories, listening on every address of the namespace) and CTDB's stock
  ``50.samba`` event script enabled (``ctdb event script enable legacy 50.samba``), whose
  monitor (every MonitorInterval, 15 s) checks that something listens on port 445.  The
  node's ``script.options`` (read by the script after its defaults) sets:
  ``CTDB_SERVICE_SMB=`` (empty: CTDB's ``service`` helper then does nothing, so the
  script's startup and shutdown never run ``service smbd start/stop`` on the host), a
  ``killall`` that does nothing (the stock startup kills every smbd of the *host*, other
  people's included), and ``SMB_CONF_PATH`` (testparm in the monitor reads this node's
  smb.conf, not the host's).  The script is also enabled only once ctdbd has started, so
  its startup part never runs.  Failure: ``kill -9`` of every smbd process in the node's
  namespace.

**What is timed**, the same for both: from just before the failure is injected to the
first TCP connect from the client namespace to ``A:445`` that succeeds *and* was
answered by another node than the victim, where A is an address the victim hosts.  A
probe (:mod:`bench.failover_probe`) runs in the client namespace, started and waiting
before the injection; it starts a non-blocking connect every 2 ms and keeps up to 0.2 s
of them outstanding, so a SYN lost to a stale neighbour entry does not hide a later one
that would succeed.  Which node answered is read from the client's neighbour (ARP) entry
for A right after the connect completes (``/proc/net/arp`` of the client namespace): the
SYN went to that MAC, and only the node owning it can have answered, so the entry is
compared with the MAC of the victim's ``eth1``.  The victim's own answers (before the
failure bites) are counted and ignored.

After each trial the victim is restored and the bench waits (with deadlines) until every
node is OK again and hosts one address: pyctdb's serviced restarts smbd itself after its
restart delay (1 s, doubling); once its restart limit (3 in 10 minutes) is spent on a
node, the bench starts smbd there by hand, as an admin would.  Each trial picks as victim
the node with the fewest restarts so far.  For CTDB the bench kills samba-dcerpcd (which
outlives smbd) through its pid file and starts smbd again; CTDB's next monitor marks the
node healthy.  Prints a table: per failure median, min and max in ms, from the injection
and from the victim's last answer to the probe (the outage a client sees: for
``systemctl stop`` smbd keeps serving while it shuts down), the ratios of the medians, one
line per trial (which pyctdb trials hit the leader: a remote node's health change reaches
the leader at its next heartbeat tick, up to 100 ms later) and the machine's load.

Everything is removed at the end, also on failure or SIGTERM: the sandbox (its context
manager), the Samba cluster (``SambaCluster.down``, which kills whatever is left in its
namespaces, smbd included), the smbd and samba-dcerpcd processes started here (by pid),
the public network's namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from bench import measure
from bench.measure import PYTHON, REPO
from ctdb.clusterd.messages import ClusterView, ClusterViewRequest
from ctdb.config.conf import load_conf
from ctdb.errors import CtdbError
from ctdb.failoverd.messages import UNHOSTED, IPList, IPListRequest
from ctdb.protocol import NODE_CURRENT, Address, Service
from ctdb.sandbox.lab import Options, Sandbox
from ctdb.sandbox.netns import Lan, delete_namespace, sh, unique
from ctdb.sandbox.samba_ctdb import SambaCluster
from ctdb.serviced.messages import ServiceList, ServiceListRequest
from ctdb.transport.sync import SyncClient

SMBD = "/usr/sbin/smbd"
SMB_PORT = 445
PROBE_LIMIT = 45.0  # seconds a probe waits for another node to answer
RESTORE_LIMIT = 60.0  # seconds for a victim to be OK and hosting again
SAMBA_SCRIPT = "50.samba"


def log(text: str) -> None:
    print(f"[bench.services {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def wait_until(what: str, check: Callable[[], bool], limit: float,
               interval: float = 0.1) -> float:
    """Poll *check* until true; the seconds it took.  TimeoutError names *what*."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (OSError, subprocess.SubprocessError, RuntimeError, AssertionError,
                CtdbError):
            pass  # a cluster in transition may not answer a query: ask again
        if time.monotonic() - start > limit:
            raise TimeoutError(f"timed out after {limit:g} s waiting for {what}")
        time.sleep(interval)


def iface_mac(netns: str, iface: str) -> str:
    out = sh("ip", "-n", netns, "-j", "link", "show", iface).stdout
    return str(json.loads(out)[0]["address"]).lower()


# -- the probe ----------------------------------------------------------------------------


@dataclass
class Trial:
    method: str
    victim: int
    address: str
    seconds: float | None  # from the injection to another node's first answer
    t0: float  # the injection, time.monotonic()
    probe: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def outage(self) -> float | None:
        """From the victim's last answer (or the injection) to another node's first."""
        t = self.probe.get("t")
        if t is None:
            return None
        last = self.probe.get("last_victim_answer")
        return float(t) - max(self.t0, float(last) if last is not None else self.t0)


class Probe:
    """``bench.failover_probe`` in the client namespace, ready before the failure."""

    def __init__(self, netns: str, address: str, victim_mac: str, *, port: int = SMB_PORT,
                 limit: float = PROBE_LIMIT, extra: Sequence[str] = ()) -> None:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env["PYTHONPATH"] = str(REPO)
        self.limit = limit
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, PYTHON, "-m", "bench.failover_probe",
             "--address", address, "--port", str(port), "--victim-mac", victim_mac,
             "--timeout", str(limit), *extra],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        if self._line(15.0) != "ready":
            self.close()
            raise RuntimeError("the failover probe did not start")

    def _line(self, limit: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], limit)
        if not ready:
            return ""
        return self.proc.stdout.readline().strip()

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        line = self._line(self.limit + 10)
        self.close()
        if not line:
            raise RuntimeError("the failover probe gave no result")
        data: dict[str, Any] = json.loads(line)
        return data

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def timed_failure(probe: Probe, inject: Callable[[], None]) -> tuple[float | None, float,
                                                                     dict[str, Any]]:
    """Start probing, inject the failure: seconds until another node answered, the
    injection's time, the probe's report."""
    probe.go()
    t0 = time.monotonic()
    inject()
    result = probe.result()
    t = result.get("t")
    return (None if t is None else float(t) - t0), t0, result


# -- pyctdb ---------------------------------------------------------------------------------


class Ours:
    """The pyctdb sandbox and what the trials need of it."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        node = sb.topo.node(0)
        conf = load_conf(node.base / "ctdb.conf", base=node.base, check_paths=False)
        self.restart_limit, self.restart_delay = conf.restart_policy
        self.manual_starts = 0

    def client(self, pnn: int) -> SyncClient:
        return SyncClient(self.sb.topo.node(pnn).run_dir, timeout=5.0)

    def view(self) -> ClusterView:
        view: ClusterView = self.client(0).request(
            Address(NODE_CURRENT, Service.CLUSTERD), ClusterViewRequest(), timeout=5.0)
        return view

    def ips(self) -> dict[str, int | None]:
        reply: IPList = self.client(0).request(
            Address(NODE_CURRENT, Service.FAILOVERD), IPListRequest(), timeout=5.0)
        return {e.address.split("/")[0]: (None if e.pnn == UNHOSTED else int(e.pnn))
                for e in reply.ips}

    def smb(self, pnn: int) -> tuple[bool, str, int]:
        """(healthy, unit state, serviced's restarts in its window) of node *pnn*'s smb."""
        reply: ServiceList = self.client(pnn).request(
            Address(NODE_CURRENT, Service.SERVICED), ServiceListRequest(), timeout=5.0)
        info = next(i for i in reply.services if i.name == "smb")
        return bool(info.healthy), ",".join(info.states), int(info.restarts)

    def settled(self) -> bool:
        """Every node OK, smbd running and healthy everywhere, one address per node."""
        view = self.view()
        if any(n.flags for n in view.nodes) or view.recovery_mode:
            return False
        hosts = list(self.ips().values())
        if sorted(h for h in hosts if h is not None) != sorted(
                n.pnn for n in view.nodes) or None in hosts:
            return False
        return all(self.smb(n.pnn)[:2] == (True, "active/running") for n in view.nodes)

    def main_pid(self, pnn: int) -> int:
        """smbd.service's main process, as the host sees it."""
        out = self.sb.exec(pnn, ["systemctl", "show", "-p", "MainPID", "--value",
                                 "smbd.service"], check=True).stdout.strip()
        inner = int(out)
        leader = getattr(self.sb.backend, "leader")(self.sb.topo.node(pnn))  # noqa: B009
        ns = os.readlink(f"/proc/{leader}/ns/pid")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                status = (entry / "status").read_text()
                nspid = next(ln.split()[1:] for ln in status.splitlines()
                             if ln.startswith("NSpid:"))
                if int(nspid[-1]) == inner and os.readlink(entry / "ns" / "pid") == ns:
                    return int(entry.name)
        raise RuntimeError(f"node {pnn}: smbd's main pid {inner} not found on the host")

    def pick_victim(self) -> tuple[int, str, int]:
        """The node with the fewest restarts (ties: lowest pnn), an address it hosts,
        and its restarts so far."""
        ips = self.ips()
        restarts, victim = min((self.smb(pnn)[2], pnn)
                               for pnn in {h for h in ips.values() if h is not None})
        address = min(a for a, h in ips.items() if h == victim)
        return victim, address, restarts

    def trial(self, method: str) -> Trial:
        victim, address, restarts = self.pick_victim()
        leader = int(self.view().leader)
        node = self.sb.topo.node(victim)
        mac = iface_mac(node.netns, "eth1")
        inject: Callable[[], None]
        if method == "stop":
            def inject() -> None:
                self.sb.exec(victim, ["systemctl", "stop", "smbd.service"], check=True)
        else:
            pid = self.main_pid(victim)

            def inject() -> None:
                os.kill(pid, signal.SIGKILL)

        probe = Probe(self.sb.topo.client, address, mac)
        try:
            seconds, t0, result = timed_failure(probe, inject)
        finally:
            probe.close()
        note = "victim was the leader" if leader == victim else ""
        if restarts >= self.restart_limit:
            # serviced has given up on this node's smbd (its restart limit): the admin's part.
            self.sb.exec(victim, ["systemctl", "start", "smbd.service"], check=True)
            self.manual_starts += 1
            note = ", ".join(filter(None, [note, "smbd started by hand (serviced's restart"
                                           " limit spent)"]))
        took = wait_until(f"pyctdb node {victim} to serve again", self.settled,
                          RESTORE_LIMIT, 0.05)
        log(f"pyctdb {method}: victim {victim} {address}: "
            f"{'never' if seconds is None else f'{seconds * 1000:.0f} ms'}; "
            f"restored {took:.1f} s later {note}")
        return Trial(method, victim, address, seconds, t0, result, note)


# -- Samba CTDB ------------------------------------------------------------------------------


class PublicLan(Lan):
    """:class:`Lan` (the private network) plus a public bridge, each node's ``eth1`` on it
    at ``198.18.2.(i+1)/24``, and a client namespace at ``198.18.2.250``."""

    def __init__(self, tag: str, count: int) -> None:
        super().__init__(tag, count)
        self.client = unique(f"{tag}-cl")
        self.public = [f"198.18.2.{i + 1}" for i in range(count)]
        self.client_ip = "198.18.2.250"

    def up(self) -> None:
        super().up()
        br = self.bridge
        sh("ip", "-n", br, "link", "add", "br1", "type", "bridge")
        sh("ip", "-n", br, "link", "set", "br1", "up")
        for i, (ns, addr) in enumerate(zip(self.nodes, self.public, strict=True)):
            sh("ip", "link", "add", "eth1", "netns", ns, "type", "veth",
               "peer", "name", f"q{i}", "netns", br)
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth1")
            sh("ip", "-n", ns, "link", "set", "eth1", "up")
            sh("ip", "-n", br, "link", "set", f"q{i}", "master", "br1", "up")
        sh("ip", "netns", "add", self.client)
        sh("ip", "-n", self.client, "link", "set", "lo", "up")
        sh("ip", "link", "add", "eth0", "netns", self.client, "type", "veth",
           "peer", "name", "qc", "netns", br)
        sh("ip", "-n", self.client, "addr", "add", f"{self.client_ip}/24", "dev", "eth0")
        sh("ip", "-n", self.client, "link", "set", "eth0", "up")
        sh("ip", "-n", br, "link", "set", "qc", "master", "br1", "up")

    def down(self) -> None:
        delete_namespace(self.client)
        super().down()


class PublicPeer(SambaCluster):
    """Samba's CTDB, 3 nodes, with 3 public addresses (``198.18.2.100-102/24`` on
    ``eth1``) on a :class:`PublicLan` with a client namespace; CTDB's defaults otherwise."""

    def __init__(self, root: Path, tag: str) -> None:
        super().__init__(root, 3, tag=tag)
        self.lan: PublicLan = PublicLan(tag, 3)
        self.addresses = [f"198.18.2.{100 + i}" for i in range(3)]

    def write_node(self, i: int) -> None:
        super().write_node(i)
        (self.etc(i) / "public_addresses").write_text(
            "".join(f"{a}/24 eth1\n" for a in self.addresses))

    # state
    def ip_hosts(self) -> dict[str, int | None]:
        out = self.ctdb(0, "ip", "all", "-X", timeout=10).stdout
        hosts: dict[str, int | None] = {}
        for line in out.splitlines()[1:]:
            fields = line.strip("|").split("|")
            if len(fields) >= 2 and fields[1].lstrip("-").isdigit():
                pnn = int(fields[1])
                hosts[fields[0]] = None if pnn < 0 else pnn
        return hosts

    def settled(self) -> bool:
        """All OK, recovery done, every monitor passed, one address per node."""
        if not self.healthy():
            return False
        hosts = self.ip_hosts()
        return sorted(h for h in hosts.values() if h is not None) == list(range(self.count))


class Peer(PublicPeer):
    """Samba's CTDB with public addresses and smbd in every node's namespace."""

    def __init__(self, root: Path, tag: str) -> None:
        super().__init__(root, tag)
        self.smbd: dict[int, subprocess.Popen[bytes]] = {}

    def smb_dir(self, i: int) -> Path:
        return self.node_dir(i) / "smb"

    def smb_conf(self, i: int) -> Path:
        return self.smb_dir(i) / "smb.conf"

    def write_node(self, i: int) -> None:
        super().write_node(i)
        etc = self.etc(i)
        with open(etc / "script.options", "a") as f:
            f.write(
                "\n# bench.services: smbd runs in this node's namespace, started by the bench.\n"
                "# Empty: CTDB's service helper does nothing (no service smbd start/stop).\n"
                "CTDB_SERVICE_SMB=\n"
                "# The stock startup would kill every smbd on the host.\n"
                "killall() { :; }\n"
                "# testparm (the monitor's smb.conf cache) reads this node's smb.conf.\n"
                f"SMB_CONF_PATH={self.smb_conf(i)}\n"
                "export SMB_CONF_PATH\n")
        d = self.smb_dir(i)
        for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc", "binddns", "log",
                    "share"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "share").chmod(0o777)
        self.smb_conf(i).write_text(
            "[global]\n"
            f"  netbios name = BSV{i}\n"
            "  workgroup = BENCH\n"
            "  server role = standalone server\n"
            "  smb ports = 445\n"
            "  disable netbios = yes\n"
            f"  private dir = {d / 'private'}\n"
            f"  lock directory = {d / 'lock'}\n"
            f"  state directory = {d / 'state'}\n"
            f"  cache directory = {d / 'cache'}\n"
            f"  pid directory = {d / 'pid'}\n"
            f"  ncalrpc dir = {d / 'ncalrpc'}\n"
            f"  binddns dir = {d / 'binddns'}\n"
            f"  passdb backend = tdbsam:{d / 'private' / 'passdb.tdb'}\n"
            f"  log file = {d / 'log' / 'log.%m'}\n"
            "  map to guest = Bad User\n"
            "  load printers = no\n"
            "  printing = bsd\n"
            "  printcap name = /dev/null\n"
            "  disable spoolss = yes\n"
            "[data]\n"
            f"  path = {d / 'share'}\n"
            "  read only = no\n"
            "  guest ok = yes\n")

    # smbd, by hand
    def start_smbd(self, i: int) -> None:
        self.stop_dcerpcd(i)
        self.smbd[i] = subprocess.Popen(
            ["ip", "netns", "exec", self.lan.nodes[i], SMBD, "--foreground",
             "--no-process-group", "-s", str(self.smb_conf(i))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.smb_dir(i) / "log" / "smbd.stderr", "ab"),  # noqa: SIM115
            start_new_session=True)

    def smbd_pids(self, i: int) -> list[int]:
        """Every smbd process in node *i*'s namespace."""
        found = []
        for pid in sh("ip", "netns", "pids", self.lan.nodes[i], check=False).stdout.split():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/exe") == SMBD:
                    found.append(int(pid))
        return found

    def listening(self, i: int) -> bool:
        r = subprocess.run(["ip", "netns", "exec", self.lan.nodes[i], "ss", "-Htln",
                            f"sport = :{SMB_PORT}"], capture_output=True, text=True,
                           check=False)
        return bool(r.stdout.strip())

    def stop_dcerpcd(self, i: int) -> None:
        """samba-dcerpcd outlives smbd: kill it through its pid file."""
        pidfile = self.smb_dir(i) / "pid" / "samba-dcerpcd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().split()[0])
            exe = os.readlink(f"/proc/{pid}/exe")
            if "samba-dcerpcd" in exe:
                os.kill(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)

    def stop_smbd(self, i: int) -> None:
        for pid in self.smbd_pids(i):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc = self.smbd.pop(i, None)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        self.stop_dcerpcd(i)

    def down(self) -> None:
        try:
            for i in range(self.count):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    self.stop_smbd(i)
        finally:
            super().down()

    def prepare_smb(self) -> None:
        """smbd everywhere, then the stock 50.samba script enabled on every node."""
        for i in range(self.count):
            self.start_smbd(i)
        for i in range(self.count):
            wait_until(f"CTDB node {i}'s smbd to listen", partial(self.listening, i), 30)
        for i in range(self.count):
            self.ctdb(i, "event", "script", "enable", "legacy", SAMBA_SCRIPT)

    def samba_monitored(self) -> bool:
        """Every node's last monitor event ran 50.samba, and it passed."""
        for i in range(self.count):
            out = self.ctdb(i, "event", "status", "legacy", "monitor", check=False).stdout
            if not any(ln.split()[:2] == [SAMBA_SCRIPT, "OK"] for ln in out.splitlines()):
                return False
        return True

    def trial(self, victim: int) -> Trial:
        hosts = self.ip_hosts()
        address = min(a for a, h in hosts.items() if h == victim)
        mac = iface_mac(self.lan.nodes[victim], "eth1")
        pids = self.smbd_pids(victim)
        if not pids:
            raise RuntimeError(f"CTDB node {victim} runs no smbd")

        def inject() -> None:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

        probe = Probe(self.lan.client, address, mac)
        try:
            seconds, t0, result = timed_failure(probe, inject)
        finally:
            probe.close()
        log(f"CTDB kill -9: victim {victim} {address}: "
            f"{'never' if seconds is None else f'{seconds * 1000:.0f} ms'}")
        proc = self.smbd.pop(victim, None)
        if proc is not None:
            proc.wait()
        self.stop_dcerpcd(victim)
        self.start_smbd(victim)  # CTDB's next monitor sees it and the node is OK again
        return Trial("ctdb-kill", victim, address, seconds, t0, result)


# -- the run ---------------------------------------------------------------------------------


METHODS = {
    "stop": "pyctdb: systemctl stop smbd",
    "kill": "pyctdb: kill -9 smbd main pid",
    "ctdb-kill": "Samba CTDB 4.17: kill -9 smbd",
}


def _ms(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:>8.0f} {min(values) * 1000:>7.0f} "
            f"{max(values) * 1000:>7.0f}")


def table(trials: list[Trial]) -> str:
    lines = [f"{'':<34} {'':>3} {'injection to another node':>24}   "
             f"{'victim last answered to':>24}",
             f"{'failure':<34} {'n':>3} {'median':>8} {'min':>7} {'max':>7}   "
             f"{'median':>8} {'min':>7} {'max':>7}   (ms)"]
    medians: dict[str, float] = {}
    for key, label in METHODS.items():
        got = [t for t in trials if t.method == key]
        ok = [t.seconds for t in got if t.seconds is not None]
        outages = [o for t in got if (o := t.outage) is not None]
        missed = len(got) - len(ok)
        if ok:
            medians[key] = statistics.median(ok)
            lines.append(f"{label:<34} {len(ok):>3} {_ms(ok)}   {_ms(outages)}"
                         + (f"  ({missed} never within {PROBE_LIMIT:g} s)" if missed else ""))
        else:
            lines.append(f"{label:<34} {0:>3} {'-':>8}"
                         + (f"  ({missed} never within {PROBE_LIMIT:g} s)" if missed else ""))
    theirs = medians.get("ctdb-kill")
    if theirs is not None:
        lines.extend(f"ratio CTDB / {METHODS[key]}: {theirs / medians[key]:.0f}x (medians)"
                     for key in ("stop", "kill") if key in medians)
    return "\n".join(lines)


@contextlib.contextmanager
def peer_cluster(root: Path) -> Iterator[tuple[Peer, threading.Thread, list[BaseException]]]:
    """Samba's cluster, brought up in a thread while the caller brings up ours."""
    peer = Peer(root, tag="bsv")
    errors: list[BaseException] = []

    def bring_up() -> None:
        try:
            t0 = time.monotonic()
            peer.up(timeout=120)
            peer.prepare_smb()
            wait_until("CTDB's 50.samba monitor to pass on every node",
                       peer.samba_monitored, 60, 0.5)
            wait_until("CTDB to settle", peer.settled, 60, 0.5)
            log(f"Samba CTDB all OK with smbd monitored after {time.monotonic() - t0:.1f} s")
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    thread = threading.Thread(target=bring_up, name="samba-ctdb-up", daemon=True)
    thread.start()
    try:
        yield peer, thread, errors
    finally:
        thread.join(150)
        peer.down()


def run(repeats: int, ctdb_repeats: int, work: Path) -> list[Trial]:
    trials: list[Trial] = []
    name = f"bs{os.getpid() % 100000}"
    with peer_cluster(work / "samba") as (peer, peer_thread, peer_errors):
        t0 = time.monotonic()
        with Sandbox(Options(name=name, nodes=3, backend="nspawn", public_ips=3,
                             services=["smb"])) as sb:
            ours = Ours(sb)
            wait_until("pyctdb to settle", ours.settled, 60)
            log(f"pyctdb sandbox {name} settled after {time.monotonic() - t0:.1f} s "
                f"(restart limit {ours.restart_limit}, delay {ours.restart_delay:g} s)")
            peer_thread.join(180)
            if peer_errors:
                raise peer_errors[0]
            if peer_thread.is_alive():
                raise TimeoutError("Samba CTDB did not come up")
            for i in range(max(repeats, ctdb_repeats)):
                if i < ctdb_repeats:
                    wait_until("CTDB to settle", peer.settled, RESTORE_LIMIT, 0.5)
                    trials.append(peer.trial(i % peer.count))
                if i < repeats:
                    trials.append(ours.trial("stop"))
                    trials.append(ours.trial("kill"))
            wait_until("CTDB to settle", peer.settled, RESTORE_LIMIT, 0.5)
    return trials


def check_clean() -> list[str]:
    """Leftovers of this run: namespaces and smbd processes."""
    left = []
    mark = f"-{os.getpid()}-bsv-"
    left += [ns for ns in sh("ip", "netns", "list").stdout.split() if mark in ns]
    name = f"bs{os.getpid() % 100000}"
    left += [ns for ns in sh("ip", "netns", "list").stdout.split()
             if ns.startswith(f"pctdb-{name}-")]
    return left


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.services")
    p.add_argument("--repeats", type=int, default=5,
                   help="trials per pyctdb failure (stop, kill -9)")
    p.add_argument("--ctdb-repeats", type=int, default=3,
                   help="trials of Samba CTDB (at least 3; each can take ~15 s)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.ctdb_repeats < 3:
        p.error("--repeats must be at least 1 and --ctdb-repeats at least 3")
    if os.geteuid() != 0:
        print("bench.services: needs root (network namespaces, containers)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    info = measure.machine()
    info["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info["command"] = " ".join([".venv/bin/python -m bench.services", *sys.argv[1:]])
    started = time.monotonic()
    cpu_before = measure.cpu_snapshot()
    work = Path(tempfile.mkdtemp(prefix=f"pctdbs-{os.getpid()}-"))
    ok = False
    try:
        trials = run(args.repeats, args.ctdb_repeats, work)
        ok = True
    finally:
        left = check_clean()
        if left:
            log(f"left behind: {', '.join(left)}")
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"failed; logs kept in {work}")
    measure.finish_context(info, started, cpu_before)
    print(table(trials))
    print()
    for t in trials:
        probe = t.probe
        first = probe.get("first_refused")
        refused_at = (f", first refusal at {(first - probe['start']) * 1000:.0f} ms"
                      if isinstance(first, float) else "")
        print(f"  {METHODS[t.method]:<34} node {t.victim} {t.address:<13} "
              f"{'never' if t.seconds is None else f'{t.seconds * 1000:7.1f} ms'}"
              f"  ({probe.get('attempts', 0)} connects, {probe.get('refused', 0)} refused, "
              f"{probe.get('unanswered', 0)} unanswered, {probe.get('victim_answers', 0)} "
              f"by the victim{refused_at}){'  ' + t.note if t.note else ''}")
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
