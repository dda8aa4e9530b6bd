"""A sandbox's names and addresses, decided once from its options (pure).

Every sandbox NAME owns the namespace prefix ``pctdb-NAME-`` and the state directory
``/run/pyctdb-sandbox/NAME``.  Addresses come from 198.18.0.0/15 (and 2001:2::/48 for
IPv6) only: the private cluster network 198.18.1.0/24 and the public network
198.18.2.0/24 for sandbox index 0; further sandboxes take the next /24 pairs so
several can run at once.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from ctdb.errors import CtdbError

STATE_ROOT = Path("/run/pyctdb-sandbox")
NS_PREFIX = "pctdb"
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
MAX_NODES = 32
MAX_PUBLIC_IPS = 64
PRIVATE_IFACE = "eth0"
PUBLIC_IFACE = "eth1"


class SandboxError(CtdbError):
    """A sandbox cannot be built or used as asked; one line says why."""


@dataclass(frozen=True)
class NodeSpec:
    pnn: int
    netns: str
    private_ip: str
    public_ip: str
    public_ip6: str | None
    root: Path  # host directory holding this node's CTDB_BASE, run and state dirs

    @property
    def base(self) -> Path:
        return self.root / "etc"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def log(self) -> Path:
        return self.root / "log.ctdb"


@dataclass(frozen=True)
class Topology:
    name: str
    index: int  # which /24 pair of 198.18.0.0/15 this sandbox uses
    nodes: tuple[NodeSpec, ...]
    public_ips: tuple[str, ...] = field(default=())
    public_ips6: tuple[str, ...] = field(default=())

    @property
    def prefix(self) -> str:
        return f"{NS_PREFIX}-{self.name}-"

    @property
    def switch(self) -> str:
        """The namespace holding the private and public bridges."""
        return f"{self.prefix}sw"

    @property
    def client(self) -> str:
        return f"{self.prefix}client"

    @property
    def client_ip(self) -> str:
        return f"198.18.{2 * self.index + 2}.250"

    @property
    def root(self) -> Path:
        return STATE_ROOT / self.name

    def node(self, pnn: int) -> NodeSpec:
        for n in self.nodes:
            if n.pnn == pnn:
                return n
        raise SandboxError(f"sandbox {self.name} has no node {pnn}")


def _v6(text: str) -> str:
    """An IPv6 address in its canonical text form, as ``ip`` and ``ctdb ip`` print it."""
    return str(ipaddress.IPv6Address(text))


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise SandboxError(f"invalid sandbox name {name!r}: 1-8 lower-case letters and digits,"
                           " starting with a letter")
    return name


def plan(name: str, nodes: int, public_ips: int = 0, ipv6: bool = False,
         index: int = 0) -> Topology:
    """Names and addresses for a sandbox of *nodes* nodes."""
    check_name(name)
    if not 1 <= nodes <= MAX_NODES:
        raise SandboxError(f"--nodes must be 1 to {MAX_NODES}")
    if not 0 <= public_ips <= MAX_PUBLIC_IPS:
        raise SandboxError(f"--public-ips must be 0 to {MAX_PUBLIC_IPS}")
    if not 0 <= index < 100:
        raise SandboxError("too many sandboxes")
    private_net = f"198.18.{2 * index + 1}"
    public_net = f"198.18.{2 * index + 2}"
    root = STATE_ROOT / name
    specs = tuple(
        NodeSpec(
            pnn=pnn,
            netns=f"{NS_PREFIX}-{name}-n{pnn}",
            private_ip=f"{private_net}.{pnn + 1}",
            public_ip=f"{public_net}.{pnn + 1}",
            public_ip6=_v6(f"2001:2:0:{index:x}::{pnn + 1:x}") if ipv6 else None,
            root=root / f"node{pnn}",
        )
        for pnn in range(nodes)
    )
    ips = tuple(f"{public_net}.{100 + i}" for i in range(public_ips))
    ips6 = tuple(_v6(f"2001:2:0:{index:x}::{0x100 + i:x}") for i in range(public_ips)) \
        if ipv6 else ()
    return Topology(name, index, specs, ips, ips6)


def add_node(topo: Topology) -> Topology:
    """The topology with one more node (the next PNN)."""
    grown = plan(topo.name, len(topo.nodes) + 1, len(topo.public_ips), bool(topo.public_ips6),
                 topo.index)
    return Topology(topo.name, topo.index, grown.nodes, topo.public_ips, topo.public_ips6)


def nodes_file(topo: Topology) -> str:
    return "".join(f"{n.private_ip}\n" for n in topo.nodes)


def public_addresses_file(topo: Topology) -> str:
    lines = [f"{ip}/24 {PUBLIC_IFACE}\n" for ip in topo.public_ips]
    lines += [f"{ip}/64 {PUBLIC_IFACE}\n" for ip in topo.public_ips6]
    return "".join(lines)
