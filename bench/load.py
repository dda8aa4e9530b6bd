"""Load benchmark: a busy cluster is not a dead one.

    .venv/bin/python -m bench.load [--minutes M] [--loss PCT]

A 3-node pyctdb sandbox (network namespaces, defaults).  For M minutes (default 10):

- every core is saturated: one busy-loop process per core, nice 0, in the host (the
  nodes' namespaces share the same CPUs);
- large messages cross the cluster all the while: three traffic processes, process k
  hosts an echo service on node k and sends 1-16 MiB echo requests (random sizes) from
  node k to node k+1 through the transport, one outstanding per flow, checking each
  reply (the approach of tests/test_cluster_load.py, on every link at once);
- with ``--loss PCT``, the sandbox's ``loss`` fault on every node: PCT% of the packets
  each node sends and receives are dropped at random (nftables), so a packet between two
  nodes is lost with about 2 x PCT% odds;
- every 100 ms each node's view (ClusterViewRequest to its clusterd) is recorded: any node
  marked DISCONNECTED by another is a false DISCONNECTED (nothing failed); leader and
  generation changes are counted;
- a subscriber to clusterd's heartbeats on every node records the largest gap between two
  heartbeats of the same sender (as delivered to that subscriber, so it also includes the
  subscriber's own scheduling delay: an upper bound of what clusterd saw);
- afterwards the nodes' logs are searched for "is DISCONNECTED" and "link lost".

Prints a summary and exits 1 if any false DISCONNECTED was seen (2 if the bench itself
failed).  Everything it starts (sandbox, busy loops, traffic processes, loss rules) is
removed again, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from bench.measure import cpu_snapshot
from ctdb.clusterd.flags import NodeFlag
from ctdb.clusterd.messages import ClusterView, ClusterViewRequest, Heartbeat
from ctdb.errors import CtdbError
from ctdb.protocol import NODE_CURRENT, Address, EchoReply, EchoRequest, Message, Service
from ctdb.protocol.codec import type_number
from ctdb.sandbox import network
from ctdb.sandbox.lab import Options, Sandbox, wait_for
from ctdb.transport.client import Client

NODES = 3
ECHO = 0x9F10  # the traffic processes' echo service number on every node
MIB = 1024 * 1024
TICK = 0.1  # seconds between view polls
NO_NODE = 0xFFFFFFFF
PR_SET_PDEATHSIG = 1
STOP_GRACE = 2.0  # seconds a traffic process keeps its echo service after the stop


def log(text: str) -> None:
    print(f"[bench.load {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _child_setup() -> None:
    """In a child before exec: nice 0, and die with the bench (even on its SIGKILL)."""
    os.setpriority(os.PRIO_PROCESS, 0, 0)
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


# -- busy loops ----------------------------------------------------------------------------

_HOG = (
    "import time\n"
    "end = time.monotonic() + {limit}\n"
    "while time.monotonic() < end:\n"
    "    for _ in range(200_000):\n"
    "        pass\n"
)


def start_hogs(seconds: float) -> list[subprocess.Popen[bytes]]:
    """One busy loop per core; each also stops by itself shortly after the run."""
    code = _HOG.format(limit=seconds + 60)
    return [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                             preexec_fn=_child_setup)  # noqa: PLW1509 (no threads yet)
            for _ in range(os.cpu_count() or 1)]


# -- traffic (a child process per flow) ------------------------------------------------------


async def _echo(sender: Client, dst: Address, payload: bytes, stop: asyncio.Event) -> Any:
    """One echo round trip; None when the stop came first."""
    request = asyncio.ensure_future(sender.request(dst, EchoRequest(payload), timeout=120))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({request, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if request.done():
        return request.result()
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError, CtdbError):
        await request
    return None


async def traffic(run_dirs: list[Path], k: int, seconds: float, low: int, high: int
                  ) -> dict[str, Any]:
    """Host the echo service on node k; send echo requests node k -> k+1 until done."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    holder: list[Client] = []

    def on_message(msg: Message) -> None:
        if isinstance(msg.body, EchoRequest) and holder:
            with contextlib.suppress(CtdbError, OSError):
                holder[0].reply(msg, EchoReply(msg.body.data))

    echo = await Client.connect(run_dirs[k], ECHO, on_message=on_message)
    holder.append(echo)
    sender = await Client.connect(run_dirs[k])
    dst = Address((k + 1) % len(run_dirs), ECHO)
    block = os.urandom(high)
    rng = random.Random(k)
    out: dict[str, Any] = {"flow": f"{k}->{dst.node}", "transfers": 0, "bytes": 0,
                           "errors": {}, "max_round_trip": 0.0, "startup_errors": 0}
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        size = rng.randint(low, high)
        payload = block[:size]
        started = time.monotonic()
        try:
            reply = await _echo(sender, dst, payload, stop)
        except (CtdbError, OSError) as exc:
            if stop.is_set():
                break
            if out["transfers"] == 0:  # the peer's echo service may not be up yet
                out["startup_errors"] += 1
                await asyncio.sleep(0.1)
                continue
            name = f"{type(exc).__name__}: {exc}"
            out["errors"][name] = out["errors"].get(name, 0) + 1
            continue
        if reply is None:
            break
        if not isinstance(reply, EchoReply) or reply.data != payload:
            out["errors"]["wrong reply"] = out["errors"].get("wrong reply", 0) + 1
            continue
        out["transfers"] += 1
        out["bytes"] += 2 * size
        out["max_round_trip"] = max(out["max_round_trip"], time.monotonic() - started)
    # The other flows stop at the same moment; keep answering their last requests a
    # little, so a stop is never counted as an error.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, deadline - time.monotonic()))
    await asyncio.sleep(STOP_GRACE)
    await sender.close()
    await echo.close()
    t = os.times()
    out["cpu_seconds"] = t.user + t.system
    return out


def start_traffic(sb: Sandbox, seconds: float, low_mib: int, high_mib: int
                  ) -> list[subprocess.Popen[str]]:
    dirs = [str(sb.topo.node(n).run_dir) for n in range(NODES)]
    return [subprocess.Popen([sys.executable, "-m", "bench.load", "--worker", str(k),
                              "--seconds", str(seconds), "--sizes", str(low_mib),
                              str(high_mib), "--run-dirs", *dirs],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                             preexec_fn=_child_setup)  # noqa: PLW1509 (no threads yet)
            for k in range(NODES)]


def stop_traffic(workers: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    results = []
    for w in workers:
        with contextlib.suppress(ProcessLookupError):
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            out, _ = w.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            w.kill()
            out, _ = w.communicate()
        try:
            results.append(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            results.append({"flow": "?", "transfers": 0, "bytes": 0, "max_round_trip": 0.0,
                            "errors": {f"worker exited {w.returncode}": 1}, "cpu_seconds": 0})
    return results


# -- the monitor ---------------------------------------------------------------------------------


@dataclass
class Monitor:
    """Views every TICK and heartbeat gaps, from a client on every node."""

    sb: Sandbox
    clients: dict[int, Client] = field(default_factory=dict)
    polls: int = 0
    unanswered: int = 0
    max_view_latency: float = 0.0
    max_poll_interval: float = 0.0
    false_disconnected: int = 0  # (observer, node) pairs turning DISCONNECTED
    false_samples: int = 0
    disconnected_now: set[tuple[int, int]] = field(default_factory=set)
    events: list[str] = field(default_factory=list)
    other_flags: dict[str, int] = field(default_factory=dict)
    leaders: dict[int, int | None] = field(default_factory=dict)
    leader_changes: dict[int, int] = field(default_factory=dict)
    generations: dict[int, int] = field(default_factory=dict)
    generation_changes: dict[int, int] = field(default_factory=dict)
    heard: dict[tuple[int, int], float] = field(default_factory=dict)  # (observer, sender)
    max_gap: float = 0.0
    max_gap_pair: tuple[int, int] = (0, 0)
    gaps_over: int = 0
    threshold: float = 0.4
    monitor_drops: int = 0
    dropped: set[int] = field(default_factory=set)
    started: float = 0.0

    async def connect(self) -> None:
        hb = type_number(Heartbeat)
        for node in self.sb.topo.nodes:
            self.clients[node.pnn] = await Client.connect(
                node.run_dir, subscriptions=[hb], on_message=self._heartbeat(node.pnn))

    def _heartbeat(self, observer: int) -> Any:
        def on_message(msg: Message) -> None:
            if not isinstance(msg.body, Heartbeat):
                return
            sender = int(msg.body.pnn)
            if sender == observer:
                return
            now = time.monotonic()
            last = self.heard.get((observer, sender))
            self.heard[(observer, sender)] = now
            if last is None or not self.started:
                return
            gap = now - last
            if gap > self.threshold:
                self.gaps_over += 1
            if gap > self.max_gap:
                self.max_gap, self.max_gap_pair = gap, (sender, observer)

        return on_message

    async def view(self, pnn: int) -> ClusterView | None:
        client = self.clients[pnn]
        if not client.connected:
            # transportd dropped a slow subscriber: the heartbeat gap across it is ours
            if pnn not in self.dropped:
                self.dropped.add(pnn)
                self.monitor_drops += 1
            for key in [k for k in self.heard if k[0] == pnn]:
                del self.heard[key]
            return None
        self.dropped.discard(pnn)
        sent = time.monotonic()
        try:
            view = await client.request(Address(NODE_CURRENT, Service.CLUSTERD),
                                        ClusterViewRequest(), timeout=2)
        except (CtdbError, OSError):
            self.unanswered += 1
            return None
        self.max_view_latency = max(self.max_view_latency, time.monotonic() - sent)
        return view if isinstance(view, ClusterView) else None

    def record(self, observer: int, view: ClusterView) -> None:
        at = time.monotonic() - self.started
        for n in view.nodes:
            if n.pnn == observer:
                continue
            pair = (observer, int(n.pnn))
            if n.flags & NodeFlag.DISCONNECTED:
                self.false_samples += 1
                if pair not in self.disconnected_now:
                    self.disconnected_now.add(pair)
                    self.false_disconnected += 1
                    self.events.append(f"{at:7.1f} s: node {observer} marks node {n.pnn} "
                                       "DISCONNECTED")
            else:
                self.disconnected_now.discard(pair)
            other = int(n.flags) & ~int(NodeFlag.DISCONNECTED)
            if other:
                word = str(NodeFlag(other))
                self.other_flags[word] = self.other_flags.get(word, 0) + 1
        leader = None if view.leader == NO_NODE else int(view.leader)
        if observer in self.leaders and self.leaders[observer] != leader:
            self.leader_changes[observer] = self.leader_changes.get(observer, 0) + 1
            self.events.append(f"{at:7.1f} s: node {observer} sees leader "
                               f"{self.leaders[observer]} -> {leader}")
        self.leaders[observer] = leader
        gen = int(view.generation)
        if observer in self.generations and self.generations[observer] != gen:
            self.generation_changes[observer] = self.generation_changes.get(observer, 0) + 1
        self.generations[observer] = gen

    async def run(self, seconds: float, progress: float = 30.0) -> None:
        self.started = time.monotonic()
        end = self.started + seconds
        next_tick = last_done = self.started
        next_progress = self.started + progress
        while True:
            now = time.monotonic()
            if now >= end:
                return
            if next_tick > now:
                await asyncio.sleep(next_tick - now)
            pnns = sorted(self.clients)
            views = await asyncio.gather(*(self.view(p) for p in pnns))
            for p, v in zip(pnns, views, strict=True):
                if v is not None:
                    self.record(p, v)
            self.polls += 1
            done = time.monotonic()
            self.max_poll_interval = max(self.max_poll_interval, done - last_done)
            last_done = done
            next_tick = max(next_tick + TICK, done)
            if done >= next_progress:
                next_progress += progress
                log(f"{done - self.started:5.0f} s: loadavg {loadavg()}, "
                    f"false DISCONNECTED {self.false_disconnected}, leader changes "
                    f"{max(self.leader_changes.values(), default=0)}, heartbeat gap max "
                    f"{self.max_gap:.2f} s")

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


# -- helpers -------------------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def all_ok(sb: Sandbox, timeout: float = 60.0) -> None:
    wait_for("every node to report all nodes OK",
             lambda: all(sb.ctdb(n.pnn, "nodestatus", "all", check=False,
                                 timeout=10).returncode == 0 for n in sb.topo.nodes),
             timeout, interval=0.2)


def tunable(sb: Sandbox, name: str, default: float) -> float:
    r = sb.ctdb(0, "getvar", name, check=False)
    try:
        return float(r.stdout.split("=")[-1])
    except ValueError:
        return default


def cluster_cpu(sb: Sandbox) -> dict[int, float]:
    """CPU seconds so far of every process in the nodes' namespaces, by pid."""
    out = {}
    for node in sb.topo.nodes:
        for pid in network.pids_in(node.netns):
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                out[pid] = t.user + t.system
    return out


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system  # this process only: its children are counted apart


def proc_cpu(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


# -- the run -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one run measured."""

    date: str
    monitor: Monitor
    flows: list[dict[str, Any]]
    logs: dict[int, str]
    load_before: str
    load_end: str
    load_max: float
    busy_share: float  # of all CPUs, whole machine
    hog_cpu: float
    daemon_cpu: float
    monitor_cpu: float


class Loads:
    """The busy loops, traffic processes and loss rules of a run; ``stop`` undoes them."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.hogs: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[str]] = []
        self.loss = 0

    def start(self, opts: argparse.Namespace, seconds: float) -> None:
        if opts.loss:
            self.loss = opts.loss
            for n in self.sb.topo.nodes:
                self.sb.loss(n.pnn, opts.loss)
        if opts.notsent_lowat is not None:
            for n in self.sb.topo.nodes:
                network.nsexec(n.netns, "sysctl", "-q", "-w",
                               f"net.ipv4.tcp_notsent_lowat={opts.notsent_lowat}")
        if opts.busy:
            self.hogs = start_hogs(seconds)
        if opts.traffic:
            self.workers = start_traffic(self.sb, seconds, *opts.sizes)

    def stop(self) -> list[dict[str, Any]]:
        """Traffic first (its results), then the busy loops and the loss rules."""
        flows = stop_traffic(self.workers) if self.workers else []
        self.workers = []
        for h in self.hogs:
            h.kill()
            h.wait()
        self.hogs = []
        if self.loss:
            for n in self.sb.topo.nodes:
                with contextlib.suppress(CtdbError, OSError):
                    self.sb.loss(n.pnn, 0)
            self.loss = 0
        return flows

    def kill(self) -> None:
        for w in self.workers:
            w.kill()
            w.wait()
        self.workers = []
        self.stop()


def measure(sb: Sandbox, opts: argparse.Namespace, loads: Loads) -> Outcome:
    seconds = opts.minutes * 60
    all_ok(sb)
    interval = tunable(sb, "HeartbeatIntervalMs", 100) / 1000
    limit = tunable(sb, "HeartbeatLimit", 4)
    marks = {n.pnn: len(sb.log_text(n.pnn)) for n in sb.topo.nodes}
    monitor = Monitor(sb, threshold=interval * limit)
    load_before = loadavg()
    log(f"{describe(opts)}, for {seconds:g} s")
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpu0, cl0, own0 = cpu_snapshot(), cluster_cpu(sb), _own_cpu()
    loads.start(opts, seconds)
    load_max = [0.0]

    async def watch() -> None:
        await monitor.connect()
        sampler = asyncio.ensure_future(_sample_load(load_max))
        try:
            await monitor.run(seconds)
        finally:
            sampler.cancel()
            await monitor.close()

    asyncio.run(watch())
    cpu1, cl1, own1 = cpu_snapshot(), cluster_cpu(sb), _own_cpu()
    hog_cpu = sum(proc_cpu(h.pid) for h in loads.hogs)
    load_end = loadavg()
    flows = loads.stop()
    total = cpu1[1] - cpu0[1]
    return Outcome(
        date=date, monitor=monitor, flows=flows,
        logs={n.pnn: sb.log_text(n.pnn)[marks[n.pnn]:] for n in sb.topo.nodes},
        load_before=load_before, load_end=load_end, load_max=load_max[0],
        busy_share=(cpu1[0] - cpu0[0]) / total if total else 0.0, hog_cpu=hog_cpu,
        monitor_cpu=own1 - own0,
        daemon_cpu=sum(v - cl0.get(pid, 0.0) for pid, v in cl1.items()))


def describe(opts: argparse.Namespace) -> str:
    parts = [f"{os.cpu_count() if opts.busy else 0} busy loops",
             f"{NODES if opts.traffic else 0} traffic flows of {opts.sizes[0]}-"
             f"{opts.sizes[1]} MiB", f"loss {opts.loss}% per node"]
    if opts.notsent_lowat is not None:
        parts.append(f"tcp_notsent_lowat {opts.notsent_lowat}")
    return ", ".join(parts)


def report(o: Outcome, opts: argparse.Namespace) -> int:
    """Print the summary; 1 if any false DISCONNECTED was seen."""
    seconds = opts.minutes * 60
    m = o.monitor
    log_disc = sum(t.count("is DISCONNECTED") for t in o.logs.values())
    log_lost = sum(t.count("link lost") for t in o.logs.values())
    moved = sum(int(f["bytes"]) for f in o.flows)
    errors: dict[str, int] = {}
    for f in o.flows:
        for k, v in f["errors"].items():
            errors[k] = errors.get(k, 0) + int(v)
    ncpu = os.cpu_count() or 1

    def share(sec: float) -> str:
        return f"{sec / (seconds * ncpu) * 100:.0f}%"

    rows = [
        ("run", f"{o.date}, {seconds:g} s, {NODES}-node sandbox (defaults), {ncpu} cores: "
                f"{describe(opts)}"),
        ("loadavg", f"before {o.load_before}; max 1-min {o.load_max:.2f}; at end {o.load_end}"),
        ("CPU used", f"{o.busy_share * 100:.0f}% of all CPUs: busy loops {share(o.hog_cpu)}, "
                     f"cluster daemons {share(o.daemon_cpu)}, traffic processes "
                     f"{share(sum(float(f.get('cpu_seconds', 0)) for f in o.flows))}, "
                     f"monitor {share(o.monitor_cpu)}, the rest other work on the machine"),
        ("traffic", f"{sum(int(f['transfers']) for f in o.flows)} echo round trips of "
                    f"{opts.sizes[0]}-{opts.sizes[1]} MiB on {len(o.flows)} flows, "
                    f"{moved / MIB:,.0f} MiB moved ({moved / MIB / seconds:.1f} MiB/s), max "
                    "round trip "
                    f"{max((float(f['max_round_trip']) for f in o.flows), default=0):.1f} s, "
                    f"errors {sum(errors.values())} (per flow: "
                    + ", ".join(f"{f['flow']} {f['transfers']}" for f in o.flows) + ")"),
        ("views", f"{m.polls} polls of {NODES} nodes (target every {TICK:g} s; longest "
                  f"interval {m.max_poll_interval:.2f} s, slowest answer "
                  f"{m.max_view_latency:.2f} s, unanswered {m.unanswered})"),
        ("false DISCONNECTED", f"{m.false_disconnected} seen in views ({m.false_samples} "
                               f"samples); logs: {log_disc} \"is DISCONNECTED\", {log_lost} "
                               "\"link lost\""),
        ("leader changes", f"{max(m.leader_changes.values(), default=0)} (generation "
                           f"changes {max(m.generation_changes.values(), default=0)})"),
        ("heartbeat gap", f"max {m.max_gap:.3f} s (node {m.max_gap_pair[0]} as heard on node "
                          f"{m.max_gap_pair[1]}); gaps over the {m.threshold:g} s detection "
                          f"time: {m.gaps_over}"
                          + (f"; monitor reconnects {m.monitor_drops}" if m.monitor_drops
                             else "")),
    ]
    if m.other_flags:
        rows.append(("other flags seen", ", ".join(f"{k} x{v}"
                                                   for k, v in m.other_flags.items())))
    print()
    for key, value in rows:
        print(f"{key:<20} {value}")
    for e, n in errors.items():
        print(f"{'':<20} traffic error x{n}: {e}")
    for event in m.events[:50]:
        print(f"{'':<20} {event}")
    for pnn, text in o.logs.items():
        for line in text.splitlines():
            if "is DISCONNECTED" in line or "link lost" in line:
                print(f"{'':<20} node {pnn} log: {line.strip()}")
    if m.false_disconnected or log_disc:
        print(f"\nresult: FAIL: false DISCONNECTED ({m.false_disconnected} seen in views, "
              f"{log_disc} in the logs)")
        return 1
    print("\nresult: pass: no false DISCONNECTED")
    return 0


def run(opts: argparse.Namespace) -> int:
    sb = Sandbox(Options(name=f"bl{os.getpid() % 100000}", nodes=NODES))
    loads = Loads(sb)
    try:
        log(f"starting a {NODES}-node sandbox ({sb.options.name})")
        sb.up()
        outcome = measure(sb, opts, loads)
    finally:
        loads.kill()
        log("removing the sandbox")
        sb.down()
    return report(outcome, opts)


async def _sample_load(peak: list[float]) -> None:
    while True:
        peak[0] = max(peak[0], os.getloadavg()[0])
        await asyncio.sleep(5)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.load", description=__doc__.split("\n\n")[0]
                                if __doc__ else None)
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    p.add_argument("--loss", type=int, default=0, metavar="PCT",
                   help="random packet loss on every node, percent (default 0)")
    p.add_argument("--sizes", type=int, nargs=2, default=[1, 16], metavar=("MIN", "MAX"),
                   help="message sizes in MiB (default 1 16)")
    p.add_argument("--busy", action=argparse.BooleanOptionalAction, default=True,
                   help="one busy loop per core (default on; --no-busy to isolate a cause)")
    p.add_argument("--traffic", action=argparse.BooleanOptionalAction, default=True,
                   help="the large cross-node messages (default on)")
    p.add_argument("--notsent-lowat", type=int, metavar="BYTES",
                   help="a diagnosis knob: set net.ipv4.tcp_notsent_lowat in every node's "
                        "namespace (bounds the unsent bytes a TCP socket queues)")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    p.add_argument("--run-dirs", nargs="+", type=Path, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if not 0 <= opts.loss <= 100:
        p.error("--loss must be 0 to 100")
    if opts.minutes <= 0 or not 1 <= opts.sizes[0] <= opts.sizes[1]:
        p.error("--minutes must be positive and --sizes MIN <= MAX, at least 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.worker is not None:
        result = asyncio.run(traffic(opts.run_dirs, opts.worker, opts.seconds,
                                     opts.sizes[0] * MIB, opts.sizes[1] * MIB))
        print(json.dumps(result), flush=True)
        return 0
    if os.geteuid() != 0:
        print("bench.load: needs root (network namespaces)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        return run(opts)
    except (CtdbError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench.load: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
