"""transportd's factory for masterd: settings from the node's configuration."""

from __future__ import annotations

from ctdb.config import Node, load_nodes
from ctdb.config.tunables import Tunables, heartbeat_timing
from ctdb.node import NodeContext
from ctdb.transport.auth import load_keys
from ctdb.transport.daemon import Transportd, TransportSettings


def settings_for(node: NodeContext) -> TransportSettings:
    """Links use the heartbeat timing too, so a dead link and a DISCONNECTED node are
    seen at the same moment."""
    conf = node.config.conf
    tunables = node.config.tunables or Tunables()
    interval, limit = heartbeat_timing(tunables, tunables.explicit)
    return TransportSettings(
        pnn=node.pnn,
        nodes=addresses(node.config.nodes or []),
        run_dir=node.run_dir,
        keys=load_keys(conf.key_file),
        port=conf.port,
        keepalive_interval=interval,
        keepalive_limit=limit,
        reload_nodes=lambda: _nodes(node),
    )


def _nodes(node: NodeContext) -> dict[int, str | None]:
    return addresses(load_nodes(node.config.base / "nodes"))


def addresses(nodes: list[Node]) -> dict[int, str | None]:
    """PNN -> address, None for a deleted node."""
    return {n.pnn: (None if n.deleted or n.address is None else str(n.address)) for n in nodes}


def create(node: NodeContext) -> Transportd:
    return Transportd(settings_for(node))
