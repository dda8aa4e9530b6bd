"""What every daemon of a node shares: its configuration, PNN and directories."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ctdb.config import Config, Node, load
from ctdb.errors import ConfigError


def is_local_address(address: str) -> bool:
    """True if *address* is configured on this host (binding to it succeeds)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def find_pnn(nodes: Sequence[Node], node_address: str | None = None) -> int:
    """This node's PNN: the node whose address is ``node address`` or is local."""
    live = [n for n in nodes if not n.deleted and n.address is not None]
    if node_address:
        for n in live:
            if str(n.address) == node_address:
                return n.pnn
        raise ConfigError(f"node address {node_address} is not in the nodes file")
    for n in live:
        with contextlib.suppress(OSError):
            if is_local_address(str(n.address)):
                return n.pnn
    raise ConfigError("none of the addresses in the nodes file is on this host; "
                      "is this node part of the cluster?")


@dataclass(frozen=True)
class NodeContext:
    config: Config
    pnn: int

    @property
    def run_dir(self) -> Path:
        return self.config.conf.run_dir

    @property
    def state_dir(self) -> Path:
        return self.config.conf.state_dir

    @classmethod
    def load(cls, base: Path | None = None) -> NodeContext:
        config = load(base)
        if not config.nodes:
            raise ConfigError(f"{config.base / 'nodes'}: no nodes configured")
        return cls(config, find_pnn(config.nodes, config.conf.node_address))
