"""The sandbox's networks and network faults, with real namespaces, veths and bridges.

One switch namespace holds two bridges: ``brpriv`` (the private cluster network) and
``brpub`` (the public network).  Each node namespace has ``eth0`` on the private
bridge (port ``pv<PNN>``) and ``eth1`` on the public one (port ``pb<PNN>``); the client
namespace has ``eth0`` on the public bridge.  No namespace has a route out.

Faults act where a real network would fail: a silent cut takes the node's port off its
bridge (the node's carrier stays up); a partition moves ports onto separate bridges;
loss drops packets at random with nftables (the kernel here has no netem).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable

from ctdb.sandbox.topology import PRIVATE_IFACE, PUBLIC_IFACE, NodeSpec, SandboxError, Topology

BRIDGES = {"private": "brpriv", "public": "brpub"}


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise SandboxError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def nsexec(ns: str, *argv: str, input_text: str | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                            input=input_text, check=False)
    if check and result.returncode != 0:
        raise SandboxError(f"{' '.join(argv)} in {ns}: {result.stderr.strip()}")
    return result


def namespaces() -> list[str]:
    out = ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def pids_in(ns: str) -> list[int]:
    out = ip("netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def kill_all(ns: str, sig: int = signal.SIGKILL) -> None:
    for pid in pids_in(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def delete(ns: str) -> None:
    kill_all(ns, signal.SIGCONT)
    kill_all(ns)
    ip("netns", "del", ns, check=False)


def port(node: NodeSpec, network: str) -> str:
    return f"{'pv' if network == 'private' else 'pb'}{node.pnn}"


def _new_ns(name: str) -> None:
    if name in namespaces():
        delete(name)
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")


def build(topo: Topology) -> None:
    """Create the switch, every node and the client; idempotent over leftovers."""
    sw = topo.switch
    _new_ns(sw)
    for bridge in BRIDGES.values():
        ip("-n", sw, "link", "add", bridge, "type", "bridge")
        ip("-n", sw, "link", "set", bridge, "up")
    for node in topo.nodes:
        add_node(topo, node)
    _new_ns(topo.client)
    ip("link", "add", "eth0", "netns", topo.client, "type", "veth", "peer", "name", "pc",
       "netns", sw)
    ip("-n", topo.client, "addr", "add", f"{topo.client_ip}/24", "dev", "eth0")
    ip("-n", topo.client, "link", "set", "eth0", "up")
    ip("-n", sw, "link", "set", "pc", "master", BRIDGES["public"], "up")
    if topo.public_ips6:
        ip("-n", topo.client, "addr", "add", f"2001:2:0:{topo.index:x}::fa/64", "dev", "eth0",
           "nodad")


def add_node(topo: Topology, node: NodeSpec) -> None:
    sw = topo.switch
    _new_ns(node.netns)
    for network, iface, addr in (("private", PRIVATE_IFACE, node.private_ip),
                                 ("public", PUBLIC_IFACE, node.public_ip)):
        p = port(node, network)
        ip("link", "add", iface, "netns", node.netns, "type", "veth", "peer", "name", p,
           "netns", sw)
        ip("-n", node.netns, "addr", "add", f"{addr}/24", "dev", iface)
        ip("-n", node.netns, "link", "set", iface, "up")
        ip("-n", sw, "link", "set", p, "master", BRIDGES[network], "up")
    # A cluster LAN's round trip is far below Linux's 200 ms minimum retransmission
    # timeout; with it, one lost segment stalls a link past the 0.4 s detection time.
    # docs/cluster.md recommends the same route setting for real private networks.
    net = node.private_ip.rsplit(".", 1)[0] + ".0/24"
    ip("-n", node.netns, "route", "replace", net, "dev", PRIVATE_IFACE, "proto", "kernel",
       "scope", "link", "src", node.private_ip, "rto_min", "20ms")
    if node.public_ip6:
        ip("-n", node.netns, "addr", "add", f"{node.public_ip6}/64", "dev", PUBLIC_IFACE,
           "nodad")


def teardown(prefix: str) -> list[str]:
    """Delete every namespace whose name starts with *prefix*; the names deleted."""
    gone = [ns for ns in namespaces() if ns.startswith(prefix)]
    # Nodes first, the switch last, so no veth outlives its peer's namespace for long.
    for ns in sorted(gone, key=lambda n: n.endswith("-sw")):
        delete(ns)
    return gone


# -- faults ----------------------------------------------------------------------
def _networks(which: str) -> Iterable[str]:
    if which == "all":
        return BRIDGES.keys()
    if which not in BRIDGES:
        raise SandboxError(f"unknown network {which!r}: private, public or all")
    return (which,)


def cut(topo: Topology, node: NodeSpec, which: str = "all") -> None:
    """Take the node's ports off their bridges: silent, the node's carrier stays up."""
    for network in _networks(which):
        ip("-n", topo.switch, "link", "set", port(node, network), "nomaster")


def heal(topo: Topology, node: NodeSpec) -> None:
    """Put the node's ports back on the main bridges and drop any loss rule."""
    for network, bridge in BRIDGES.items():
        ip("-n", topo.switch, "link", "set", port(node, network), "master", bridge)
    nsexec(node.netns, "nft", "delete", "table", "inet", "pctdb_loss", check=False)


def partition(topo: Topology, groups: list[list[int]]) -> None:
    """Split the private network: the first group stays, each other gets its own bridge."""
    seen: set[int] = set()
    for group in groups:
        for pnn in group:
            topo.node(pnn)
            if pnn in seen:
                raise SandboxError(f"node {pnn} is in two groups")
            seen.add(pnn)
    for i, group in enumerate(groups[1:], 1):
        bridge = f"brx{i}"
        if ip("-n", topo.switch, "link", "show", bridge, check=False).returncode != 0:
            ip("-n", topo.switch, "link", "add", bridge, "type", "bridge")
            ip("-n", topo.switch, "link", "set", bridge, "up")
        for pnn in group:
            ip("-n", topo.switch, "link", "set", port(topo.node(pnn), "private"), "master",
               bridge)


def loss(node: NodeSpec, percent: int) -> None:
    """Drop *percent* % of the node's packets at random, both ways (0 removes it)."""
    if not 0 <= percent <= 100:
        raise SandboxError("loss must be 0 to 100 percent")
    nsexec(node.netns, "nft", "delete", "table", "inet", "pctdb_loss", check=False)
    if percent == 0:
        return
    # nftables' numgen compares within 0-99, so 100 % is a plain drop.
    odds = "" if percent == 100 else f"numgen random mod 100 < {percent} "
    rules = (
        "add table inet pctdb_loss\n"
        "add chain inet pctdb_loss in { type filter hook input priority -300; }\n"
        "add chain inet pctdb_loss out { type filter hook output priority -300; }\n"
        f"add rule inet pctdb_loss in iifname != lo {odds}drop\n"
        f"add rule inet pctdb_loss out oifname != lo {odds}drop\n"
    )
    nsexec(node.netns, "nft", "-f", "-", input_text=rules)


def link(node: NodeSpec, iface: str, up: bool) -> None:
    """A visible carrier change on one of the node's interfaces."""
    ip("-n", node.netns, "link", "set", iface, "up" if up else "down")
