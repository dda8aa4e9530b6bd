"""Public IP failover in a real sandbox: every address on exactly one node, always."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from ctdb.sandbox.lab import Options, Sandbox, wait_for
from tests.test_cluster import agreed

IPS = 3


def node_view(netns: str) -> tuple[str, set[str], set[str]]:
    """A node's public interface's IPv4 addresses (``ip -o`` text), the addresses its
    nftables gate guards, and those the gate lets through now: one process per node."""
    out = subprocess.run(["ip", "netns", "exec", netns, "sh", "-c",
                          "ip -4 -o addr show dev eth1; echo ===; "
                          "nft -j list table inet pyctdb 2>/dev/null"],
                         capture_output=True, text=True, check=False).stdout
    addrs, _, gate = out.partition("===\n")
    sets: dict[str, set[str]] = {"public4": set(), "live4": set()}
    for item in json.loads(gate.strip() or "{}").get("nftables", []):
        found = item.get("set")
        if found and found.get("name") in sets:
            for e in found.get("elem", []):
                sets[found["name"]].add(e["elem"]["val"] if isinstance(e, dict) else e)
    return addrs, sets["public4"], sets["live4"]


class Watcher:
    """Reads every node's public interface over and over; records an address live on two
    nodes in two consecutive passes read in opposite node orders (a single pass is not
    atomic: a move between two reads would look like an overlap).  An IPv4 address is
    live on a node when its kernel has it and the node's nftables gate lets it through
    (a lost node's kernel may keep an address for a second or two after its gate lease
    ran out: it neither answers ARP nor carries traffic for it then)."""

    def __init__(self, sb: Sandbox, ips: tuple[str, ...] = ()) -> None:
        self.sb = sb
        self.ips = ips or sb.topo.public_ips
        self.duplicates: list[tuple[float, dict[str, list[int]]]] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def where(self, reverse: bool = False) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {ip: [] for ip in self.ips}
        nodes = list(self.sb.topo.nodes)
        for node in reversed(nodes) if reverse else nodes:
            out, gated, live = node_view(node.netns)
            for ip, holders in found.items():
                if f" {ip}/" in out and (ip not in gated or ip in live):
                    holders.append(node.pnn)
        return {ip: sorted(v) for ip, v in found.items()}

    def _run(self) -> None:
        previous: dict[str, list[int]] = {}
        reverse = False
        while not self._stop.is_set():
            state = self.where(reverse)
            reverse = not reverse
            self.samples += 1
            for ip, holders in state.items():
                if len(holders) > 1 and set(holders) <= set(previous.get(ip, [])):
                    self.duplicates.append((time.monotonic(), state))
            previous = state

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(Options(name=f"f{os.getpid() % 100000}", nodes=3, public_ips=IPS)) as sandbox:
        yield sandbox


def hosts(sb: Sandbox) -> dict[str, int | None]:
    doc = json.loads(sb.ctdb(0, "--json", "ip", "all").stdout)
    return {e["address"]: e["pnn"] for e in doc["ips"]}


def balanced(sb: Sandbox, watcher: Watcher | None = None) -> dict[str, list[int]]:
    """Wait until every address is on exactly one node and the nodes agree with ctdb ip."""
    w = watcher or Watcher(sb)

    def check() -> dict[str, list[int]] | None:
        where = w.where()
        if any(len(v) != 1 for v in where.values()):
            return None
        if {ip: v[0] for ip, v in where.items()} != hosts(sb):
            return None
        return where

    return wait_for("every public address on exactly one node", check, timeout=20)


def test_every_address_on_exactly_one_node(sb: Sandbox) -> None:
    agreed(sb, [0, 1, 2], {0: "OK", 1: "OK", 2: "OK"})
    wait_for("LCP2 to spread the addresses over the nodes",
             lambda: sorted(v[0] for v in balanced(sb).values()) == [0, 1, 2])
    text = sb.ctdb(1, "ip").stdout.splitlines()
    assert text[0] == "Public IPs on node 1"
    assert len(text) == 1 + IPS
    machine = sb.ctdb(1, "-X", "ip").stdout.splitlines()
    assert machine[0] == "|Public IP|Node|"


@pytest.mark.parametrize(("off", "on"), [("disable", "enable"), ("stop", "continue")])
def test_disabled_or_stopped_node_hands_its_addresses_over(sb: Sandbox, off: str,
                                                           on: str) -> None:
    balanced(sb)
    with Watcher(sb) as w:
        sb.ctdb(1, off)
        wait_for("node 1 to host nothing", lambda: 1 not in hosts(sb).values()
                 and all(v is not None for v in hosts(sb).values()))
        sb.ctdb(1, on)
        balanced(sb, w)
        # It watched the whole time, and goes on a few passes after the last move.
        wait_for("the watcher's passes", lambda: w.samples > 10)
    assert w.duplicates == []


def test_frozen_node_loses_its_addresses_only_after_its_lease(sb: Sandbox) -> None:
    where = balanced(sb)
    victim = 2
    mine = [ip for ip, v in where.items() if v == [victim]]
    assert mine
    with Watcher(sb) as w:
        sb.freeze(victim)
        try:
            wait_for("the frozen node's addresses served elsewhere", lambda: all(
                h not in (None, victim) for ip, h in hosts(sb).items() if ip in mine),
                timeout=15)
        finally:
            sb.thaw(victim)
        balanced(sb, w)
    assert w.duplicates == [], "an address was on two nodes at once"


def test_moveip(sb: Sandbox) -> None:
    where = balanced(sb)
    ip, holder = next((ip, v[0]) for ip, v in where.items())
    target = (holder + 1) % 3
    sb.ctdb(0, "moveip", ip, str(target))
    assert hosts(sb)[ip] == target
    assert Watcher(sb).where()[ip] == [target]


def test_the_watcher_sees_a_real_duplicate(sb: Sandbox) -> None:
    """The check above can fail: an address on two nodes is caught."""
    net = sb.topo.public_ips[0].rsplit(".", 1)[0]
    stray = f"{net}.200"
    nodes = [sb.topo.node(0).netns, sb.topo.node(1).netns]
    for ns in nodes:
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{stray}/24", "dev", "eth1"],
                       check=True)
    try:
        with Watcher(sb, (stray,)) as w:
            wait_for("the watcher to notice", lambda: w.duplicates)
    finally:
        for ns in nodes:
            subprocess.run(["ip", "-n", ns, "addr", "del", f"{stray}/24", "dev", "eth1"],
                           check=False)


def test_release_ips_removes_what_a_crash_left(sb: Sandbox) -> None:
    """The unit's ExecStopPost (ctdbd --release-ips) clears a stopped node's addresses."""
    from ctdb.sandbox.lab import BIN

    balanced(sb)
    sb.stop(2)
    ip = sb.topo.public_ips[0]
    ns = sb.topo.node(2).netns
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth1"], check=True)
    try:
        r = sb.exec(2, [str(BIN / "ctdbd"), "--release-ips"], check=True)
        assert "removed 1 public address" in r.stderr
        out = subprocess.run(["ip", "-n", ns, "-o", "addr", "show", "dev", "eth1"],
                             capture_output=True, text=True, check=True).stdout
        assert f" {ip}/" not in out
    finally:
        subprocess.run(["ip", "-n", ns, "addr", "del", f"{ip}/24", "dev", "eth1"],
                       check=False, capture_output=True)
        sb.start(2)
        sb.wait_ready(2)


def test_an_ipv6_public_address_fails_over_too() -> None:
    sandbox = Sandbox(Options(name=f"g{os.getpid() % 100000}", nodes=3, public_ips=1,
                              ipv6=True))
    try:
        sandbox.up()
        ip6 = sandbox.topo.public_ips6[0]
        wait_for("the IPv6 address hosted", lambda: hosts(sandbox).get(ip6) is not None)
        holder = hosts(sandbox)[ip6]
        assert holder is not None
        sandbox.ctdb(holder, "disable")
        new = wait_for("the IPv6 address on another node", lambda: (
            h if (h := hosts(sandbox).get(ip6)) not in (None, holder) else None))
        out = subprocess.run(["ip", "-n", sandbox.topo.node(new).netns, "-6", "-o", "addr",
                              "show", "dev", "eth1"], capture_output=True, text=True,
                             check=True).stdout
        assert f" {ip6}/64" in out
    finally:
        sandbox.down()


def test_ifaces_in_ctdb_layouts(sb: Sandbox) -> None:
    where = balanced(sb)
    mine = sum(1 for v in where.values() if v == [1])
    assert sb.ctdb(1, "ifaces").stdout == (
        f"Interfaces on node 1\nname:eth1 link:up references:{mine}\n")
    assert sb.ctdb(1, "-X", "ifaces").stdout == (
        f"|Name|LinkStatus|References|\n|eth1|1|{mine}|\n")
    doc = json.loads(sb.ctdb(1, "--json", "ifaces").stdout)
    assert doc == {"interfaces": [{"name": "eth1", "link": "up", "references": mine}]}
