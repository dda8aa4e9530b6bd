"""The nodes file: every node's private address, one per line; the line order is the PNN.

CTDB 4.17's rules (ctdb_read_nodes_file in ctdb/common/ctdb_util.c):

* a carriage return ends a line; spaces and tabs around the address are dropped;
* a blank line is skipped and does *not* use up a PNN;
* a line starting with ``#`` is a *deleted* node and *does* use up a PNN, so that
  removing a node does not renumber the ones after it.  There are no comments in
  this file: ``# some remark`` is a deleted node too;
* anything else must be exactly one IPv4 or IPv6 address (IPv6 may be bracketed;
  ``::ffff:a.b.c.d`` means the IPv4 address), with no trailing text.

We also refuse what CTDB only trips over later: the same address twice, and a file
with no live node.
"""

from __future__ import annotations

from ctdb.config.values import IPAddress, config_error, parse_node_ip, read_text
from ctdb.record import frozen

TYPE_CHECKING = False  # typing is not imported at run time (the ctdb CLI's start-up)
if TYPE_CHECKING:
    from pathlib import Path


@frozen
class Node:
    """One line of the nodes file; a deleted node has no address."""

    pnn: int
    address: IPAddress | None
    deleted: bool = False


def parse_nodes(text: str, filename: str = "nodes") -> list[Node]:
    """The nodes listed in *text*, by PNN; ConfigError on a bad or duplicate address."""
    if "\0" in text:
        raise config_error(filename, text[: text.index("\0")].count("\n") + 1, "NUL character")
    nodes: list[Node] = []
    seen: dict[IPAddress, int] = {}
    lines = text.split("\n")
    for number, raw in enumerate(lines, start=1):
        entry = raw.split("\r", 1)[0].strip(" \t")
        if not entry:
            continue
        if entry.startswith("#"):
            nodes.append(Node(len(nodes), None, deleted=True))
            continue
        try:
            address = parse_node_ip(entry)
        except ValueError as e:
            raise config_error(filename, number, f"bad node address: {e}") from None
        if address in seen:
            raise config_error(
                filename, number, f"duplicate node address {address} (also on line {seen[address]})"
            )
        seen[address] = number
        nodes.append(Node(len(nodes), address))
    if not seen:
        last = max(1, len(lines) - (1 if text.endswith("\n") else 0))
        raise config_error(filename, last, "no nodes: every line is blank or a deleted node")
    return nodes


def load_nodes(path: Path) -> list[Node]:
    """Read a nodes file; OSError (e.g. FileNotFoundError) propagates."""
    return parse_nodes(read_text(path), str(path))
