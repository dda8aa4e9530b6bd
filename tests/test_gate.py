"""The nftables gate: a public IPv4 address not renewed within IPGateMs goes dark."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from ctdb.failoverd.gate import renewal, ruleset, set_public
from ctdb.sandbox import netns
from ctdb.sandbox.lab import Options, Sandbox, wait_for


def test_renewal_replaces_the_live_sets_in_one_line() -> None:
    line = renewal(["198.18.2.101", "2001:2::1", "198.18.2.100"], 300)
    assert line == ("flush set inet pyctdb live4; add element inet pyctdb live4 "
                    "{ 198.18.2.100 timeout 300ms, 198.18.2.101 timeout 300ms }; "
                    "flush set arp pyctdb live4; add element arp pyctdb live4 "
                    "{ 198.18.2.100 timeout 300ms, 198.18.2.101 timeout 300ms }\n")
    assert renewal([], 300) == "flush set inet pyctdb live4; flush set arp pyctdb live4\n"
    assert set_public(["198.18.2.100"]).count("add element") == 2


def nft(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", *args], capture_output=True,
                          text=True, check=True).stdout


def test_ruleset_loads_and_elements_expire(tmp_path: object) -> None:
    name = netns.unique("gate")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        text = ruleset(["198.18.2.100", "198.18.2.101", "2001:2::1"])
        for _ in range(2):  # loading again replaces the tables
            subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=text,
                           text=True, check=True)
        assert "198.18.2.100, 198.18.2.101" in nft(name, "list", "set", "inet", "pyctdb",
                                                   "public4")
        subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"],
                       input=renewal(["198.18.2.100"], 200), text=True, check=True)
        for family in ("inet", "arp"):
            assert "198.18.2.100" in nft(name, "list", "set", family, "pyctdb", "live4")
        wait_for("the element to expire", lambda: "198.18.2.100" not in nft(
            name, "list", "set", "inet", "pyctdb", "live4"), timeout=2)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(Options(name=f"q{os.getpid() % 100000}", nodes=3, public_ips=3)) as sandbox:
        yield sandbox


def live(sb: Sandbox, pnn: int) -> str:
    return nft(sb.topo.node(pnn).netns, "list", "set", "inet", "pyctdb", "live4")


def held(sb: Sandbox, pnn: int) -> list[str]:
    out = sb.ctdb(0 if pnn else 1, "ip", "all").stdout
    return [ln.split()[0] for ln in out.splitlines()[1:] if ln.split()[1] == str(pnn)]


def test_a_frozen_node_goes_dark_and_its_address_moves(sb: Sandbox) -> None:
    """How fast is measured by the benchmarks (bench.cluster's forced moves)."""
    leader = int(sb.ctdb(0, "leader").stdout)
    victim = next(p for p in (2, 1, 0) if p != leader)
    ip = wait_for(f"an address on node {victim}", lambda: (held(sb, victim) or [None])[0])
    wait_for(f"node {victim}'s gate open for it", lambda: ip in live(sb, victim))
    for pnn in range(3):
        public4 = nft(sb.topo.node(pnn).netns, "list", "set", "arp", "pyctdb", "public4")
        assert all(a in public4 for a in sb.topo.public_ips)
    sb.freeze(victim)
    try:
        # Nothing on the frozen node renews the lease: the gate closes by itself, while
        # the kernel may keep the address itself for a second or two more.
        wait_for(f"node {victim}'s gate to close", lambda: ip not in live(sb, victim),
                 timeout=2)
        others = [p for p in range(3) if p != victim]
        wait_for(f"{ip} on another node", lambda: any(ip in held(sb, p) for p in others),
                 timeout=5)
    finally:
        sb.thaw(victim)
    wait_for(f"node {victim} hosting again", lambda: held(sb, victim))
