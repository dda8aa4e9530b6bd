"""A node's public interfaces and addresses changing while it runs: link state (pure
rules, and a node whose public link goes down), ipinfo, addip/delip, reloadips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ctdb.failoverd.links import hostable, link_health, partially_online
from ctdb.sandbox.lab import BIN, Options, Sandbox, wait_for
from ctdb.sandbox.topology import PUBLIC_IFACE


@pytest.mark.parametrize(("links", "healthy", "partial"), [
    ({"eth1": True, "eth2": True}, (True, ""), False),
    ({"eth1": True, "eth2": False}, (True, ""), True),
    ({"eth1": False, "eth2": False}, (False, "public interfaces down: eth1, eth2"), False),
    ({"eth1": False}, (False, "public interfaces down: eth1, eth2"), False),  # eth2 missing
    ({}, (False, "public interfaces down: eth1, eth2"), False),
])
def test_link_health(links: dict[str, bool], healthy: tuple[bool, str], partial: bool) -> None:
    assert link_health(["eth2", "eth1", "eth1"], links) == healthy
    assert partially_online(["eth1", "eth2"], links) is partial


def test_link_health_without_public_interfaces() -> None:
    assert link_health([], {}) == (True, "")
    assert link_health(["eth1"], {"eth1": False}) == (False, "public interface down: eth1")


def test_hostable_addresses() -> None:
    public = {"198.18.2.10": ["eth1"], "198.18.2.11": ["eth2", "eth1"], "198.18.2.12": ["eth2"]}
    assert hostable(public, {"eth1": True, "eth2": False}) == ["198.18.2.10", "198.18.2.11"]
    assert hostable(public, {"eth1": False, "eth2": True}) == ["198.18.2.11", "198.18.2.12"]
    assert hostable(public, {}) == []


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(Options(name=f"l{os.getpid() % 100000}", nodes=2, public_ips=2)) as sandbox:
        yield sandbox


def state(sb: Sandbox, pnn: int) -> str:
    doc = json.loads(sb.ctdb(0, "--json", "status", check=False).stdout or "{}")
    return next((n["state"] for n in doc.get("nodes", []) if n["pnn"] == pnn), "")


def held_by(sb: Sandbox, pnn: int) -> list[str]:
    doc = json.loads(sb.ctdb(0, "--json", "ip", "all").stdout)
    return [e["address"] for e in doc["ips"] if e["pnn"] == pnn]


def test_public_link_down_makes_the_node_unhealthy_and_its_addresses_move(sb: Sandbox) -> None:
    wait_for("one address on each node", lambda: held_by(sb, 0) and held_by(sb, 1))
    sb.linkdown(1, PUBLIC_IFACE)
    wait_for("node 1 UNHEALTHY", lambda: state(sb, 1) == "UNHEALTHY", timeout=5)
    wait_for("both addresses on node 0", lambda: len(held_by(sb, 0)) == 2, timeout=10)
    assert "node is UNHEALTHY (interfaces: public interface down: eth1)" in sb.log_text(1)
    ifaces = sb.ctdb(1, "-X", "ifaces").stdout.splitlines()
    assert ifaces == ["|Name|LinkStatus|References|", "|eth1|0|0|"]
    sb.linkup(1, PUBLIC_IFACE)
    wait_for("node 1 OK", lambda: state(sb, 1) == "OK", timeout=5)
    wait_for("node 1 hosting again", lambda: held_by(sb, 1), timeout=10)


def netns_addresses(sb: Sandbox, pnn: int) -> str:
    return subprocess.run(["ip", "-n", sb.topo.node(pnn).netns, "-o", "addr", "show", "dev",
                           PUBLIC_IFACE], capture_output=True, text=True, check=True).stdout


def test_ipinfo_addip_delip(sb: Sandbox) -> None:
    ip = wait_for("an address on node 1", lambda: (held_by(sb, 1) or [None])[0])
    info = sb.ctdb(1, "ipinfo", ip).stdout.splitlines()
    assert info[:4] == [f"Public IP[{ip}] info on node 1", f"IP:{ip}", "CurrentNode:1",
                        "NumInterfaces:1"]
    assert info[4].startswith(f"Interface[1]: Name:{PUBLIC_IFACE} Link:up References:")
    assert info[4].endswith(" (active)")
    extra = ip.rsplit(".", 1)[0] + ".200"
    sb.ctdb(1, "addip", f"{extra}/24", PUBLIC_IFACE)
    wait_for(f"{extra} hosted by node 1", lambda: extra in held_by(sb, 1))
    assert f" {extra}/24 " in netns_addresses(sb, 1)
    again = sb.ctdb(1, "addip", f"{extra}/24", PUBLIC_IFACE, check=False)
    assert (again.returncode, again.stderr.strip()) == (1, f"Node already knows about IP {extra}")
    sb.ctdb(1, "delip", extra)
    wait_for(f"{extra} gone", lambda: extra not in sb.ctdb(0, "ip", "all").stdout)
    assert f" {extra}/24 " not in netns_addresses(sb, 1)
    missing = sb.ctdb(1, "delip", extra, check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"Node does not know about IP {extra}"


def test_reloadips_adds_and_releases(sb: Sandbox) -> None:
    files = [sb.topo.node(p).base / "public_addresses" for p in (0, 1)]
    original = [f.read_text() for f in files]
    first = original[0].split()[0].split("/")[0]
    extra = first.rsplit(".", 1)[0] + ".201"
    try:
        for f, text in zip(files, original, strict=True):
            f.write_text(text + f"{extra}/24 {PUBLIC_IFACE}\n")
        sb.ctdb(0, "reloadips")
        wait_for(f"{extra} hosted", lambda: extra in held_by(sb, 0) + held_by(sb, 1))
        holder = 0 if extra in held_by(sb, 0) else 1
        for f, text in zip(files, original, strict=True):
            f.write_text(text)
        sb.ctdb(0, "reloadips", "0,1")
        wait_for(f"{extra} released", lambda: extra not in sb.ctdb(0, "ip", "all").stdout)
        assert f" {extra}/24 " not in netns_addresses(sb, holder)
        bad = sb.ctdb(0, "reloadips", "7", check=False)
        assert (bad.returncode, bad.stderr.strip()) == (1, "Node 7 does not exist")
    finally:
        for f, text in zip(files, original, strict=True):
            f.write_text(text)


def test_setifacelink_overrides_until_the_kernel_reports(sb: Sandbox) -> None:
    wait_for("node 1 OK", lambda: state(sb, 1) == "OK")
    sb.ctdb(1, "setifacelink", PUBLIC_IFACE, "down")
    wait_for("node 1 UNHEALTHY", lambda: state(sb, 1) == "UNHEALTHY", timeout=5)
    assert sb.ctdb(1, "-X", "ifaces").stdout.splitlines()[1].startswith(f"|{PUBLIC_IFACE}|0|")
    sb.ctdb(1, "setifacelink", PUBLIC_IFACE, "up")
    wait_for("node 1 OK", lambda: state(sb, 1) == "OK", timeout=5)
    bad = sb.ctdb(1, "setifacelink", "eth9", "down", check=False)
    assert (bad.returncode, bad.stderr.strip()) == (1, "Interface eth9 not configured on node 1")
    assert sb.ctdb(1, "setifacelink", PUBLIC_IFACE, "sideways", check=False).returncode == 2


def test_addtickle_deltickle(sb: Sandbox) -> None:
    ip = wait_for("an address on node 1", lambda: (held_by(sb, 1) or [None])[0])
    pair = [f"{sb.topo.client_ip}:40999", f"{ip}:2049"]
    row = f"|{sb.topo.client_ip}|40999|{ip}|2049|"
    sb.ctdb(1, "addtickle", *pair)
    wait_for("node 0 to know the connection", lambda: row in sb.ctdb(
        0, "-X", "gettickles", ip).stdout)
    deleted = subprocess.run(sb.backend.exec_argv(sb, sb.topo.node(1), [
        str(BIN / "ctdb"), "deltickle"]), input=" ".join(pair) + "\n", text=True,
        capture_output=True, env=sb.backend.node_env(sb, sb.topo.node(1)), check=False)
    assert deleted.returncode == 0, deleted.stderr
    wait_for("node 0 to forget it", lambda: row not in sb.ctdb(0, "-X", "gettickles",
                                                               ip).stdout)


SNIFF_ARP = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.settimeout(10)
print("ready", flush=True)
while True:
    frame = s.recv(2048)
    if socket.inet_ntoa(frame[28:32]) == sys.argv[1]:  # the ARP sender's IP
        print("announced", flush=True)
        break
"""


def test_gratarp(sb: Sandbox) -> None:
    ip = wait_for("an address on node 1", lambda: (held_by(sb, 1) or [None])[0])
    sniffer = subprocess.Popen(sb.client_argv([sys.executable, "-c", SNIFF_ARP, ip]),
                               stdout=subprocess.PIPE, text=True)
    try:
        assert sniffer.stdout is not None
        assert sniffer.stdout.readline().strip() == "ready"
        sb.ctdb(1, "gratarp", ip, PUBLIC_IFACE)
        out, _ = sniffer.communicate(timeout=15)
        assert out.strip() == "announced"
    finally:
        sniffer.kill()
        sniffer.wait()
    assert sb.ctdb(1, "gratarp", "x", PUBLIC_IFACE, check=False).returncode == 2
