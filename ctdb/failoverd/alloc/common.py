"""Steps every allocator shares, and the working state they share them through.

CTDB works on one merged list of addresses ordered by descending address value (the
order its red-black tree traversal leaves them in), and its loops break ties by taking
the first address in that list and the lowest PNN.  :class:`Work` keeps that order so
that every algorithm here picks exactly what CTDB would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ctdb.failoverd.alloc.model import (
    Allocation,
    AllocationRequest,
    Eligibility,
    IPAddress,
)

NO_NODE = -1
"""Internal marker for "not assigned" (CTDB's CTDB_UNKNOWN_PNN)."""


def _ctdb_key(address: IPAddress) -> tuple[int, int]:
    # CTDB keys IPv4 as ::a.b.c.d, so IPv4 addresses sort below any global IPv6 one.
    return (int(address), address.version)


class Work:
    """Mutable state of one run: addresses in CTDB's order, who may take each, who has it."""

    __slots__ = ("addresses", "hosts", "keys", "num_nodes", "pnn", "takers")

    def __init__(self, request: AllocationRequest) -> None:
        nodes = request.nodes
        tunables = request.tunables
        self.num_nodes = len(nodes)
        hosting = {Eligibility.ELIGIBLE}
        if not tunables.no_ip_host_on_all_disabled and all(
            n.eligibility is not Eligibility.ELIGIBLE for n in nodes
        ):
            # The pre-4.9 rule: with every node disabled, disabled nodes may serve.
            hosting.add(Eligibility.DISABLED)
        # One pass over every node's list: large clusters have nodes x addresses entries.
        slots: dict[IPAddress, int] = {}
        found: list[IPAddress] = []
        known_on: list[set[int]] = []
        hosts: list[list[int]] = []
        for pnn, node in enumerate(nodes):
            may_host = node.eligibility in hosting
            down = node.down_interfaces
            for ip in node.public_ips:
                slot = slots.get(ip.address)
                if slot is None:
                    slot = slots[ip.address] = len(found)
                    found.append(ip.address)
                    known_on.append(set())
                    hosts.append([])
                known_on[slot].add(pnn)
                if (
                    may_host
                    and (not down or not ip.interfaces or any(i not in down for i in ip.interfaces))
                    and (not hosts[slot] or hosts[slot][-1] != pnn)
                ):
                    hosts[slot].append(pnn)
        order = sorted(range(len(found)), key=lambda s: _ctdb_key(found[s]), reverse=True)
        self.addresses: list[IPAddress] = [found[s] for s in order]
        self.keys: list[int] = [int(a) for a in self.addresses]
        self.hosts: list[frozenset[int]] = [frozenset(hosts[s]) for s in order]
        # Nodes that may *take over* an address, in PNN order; NoIPTakeover empties it.
        self.takers: list[tuple[int, ...]] = [
            () if tunables.no_ip_takeover else tuple(hosts[s]) for s in order
        ]
        position = [0] * len(order)
        for i, s in enumerate(order):
            position[s] = i
        self.pnn: list[int] = [NO_NODE] * len(order)
        for address, holder in request.current.items():
            slot = slots.get(address)
            # A node is only heard about the addresses it lists itself.
            if slot is not None and holder is not None and holder in known_on[slot]:
                self.pnn[position[slot]] = holder

    def counts(self) -> list[int]:
        """Addresses per node (CTDB's node_ip_coverage for every node at once)."""
        counts = [0] * self.num_nodes
        for p in self.pnn:
            if p != NO_NODE:
                counts[p] += 1
        return counts

    def result(self) -> Allocation:
        """The assignment, in ascending address order."""
        return {
            a: (None if p == NO_NODE else p)
            for a, p in sorted(zip(self.addresses, self.pnn, strict=True), key=_ctdb_order)
        }


def _ctdb_order(item: tuple[IPAddress, int]) -> tuple[int, int]:
    return _ctdb_key(item[0])


def unassign_unsuitable(work: Work) -> None:
    """Take addresses away from nodes that may no longer host them.

    NoIPTakeover does not apply here: a node keeps what it may still host.
    """
    for i, p in enumerate(work.pnn):
        if p != NO_NODE and p not in work.hosts[i]:
            work.pnn[i] = NO_NODE


def find_takeover_node(work: Work, i: int, counts: list[int]) -> bool:
    """Give address *i* to the least loaded node that may take it (lowest PNN on a tie).

    Leaves the address where it is, and returns False, when no node may take it.
    """
    takers = work.takers[i]
    if not takers:
        return False
    best = min(takers, key=counts.__getitem__)
    old = work.pnn[i]
    if old != NO_NODE:
        counts[old] -= 1
    counts[best] += 1
    work.pnn[i] = best
    return True


def basic_allocate_unassigned(work: Work, counts: list[int]) -> None:
    """Walk the list once, giving each unassigned address to the least loaded taker."""
    for i, p in enumerate(work.pnn):
        if p == NO_NODE:
            find_takeover_node(work, i, counts)


def merge_hosted(hosted: Mapping[int, Iterable[IPAddress]]) -> dict[IPAddress, int]:
    """Merge what each node says it hosts into one ``current`` map, CTDB's way.

    Each node is believed only about itself; if two nodes both claim an address the
    higher PNN wins, as in CTDB's merged list.
    """
    merged: dict[IPAddress, int] = {}
    for pnn in sorted(hosted):
        for address in hosted[pnn]:
            merged[address] = pnn
    return merged
