"""IPAllocAlgorithm=1: keep addresses where they are, then even out the counts.

Despite CTDB's name the result is a pure function of the input: "non-deterministic"
means it depends on the current assignment (history), not on chance.  Addresses stay
put when they can, orphans go to the least loaded node, and unless NoIPFailback is set
addresses move one at a time from the fullest to the emptiest node until, for every
address, the nodes that could take it differ by at most one address -- or until
CTDB's retry limit (number of addresses + 5) is reached.
"""

from __future__ import annotations

from ctdb.failoverd.alloc.common import (
    NO_NODE,
    Work,
    basic_allocate_unassigned,
    find_takeover_node,
    unassign_unsuitable,
)


def allocate_nondeterministic(work: Work, no_ip_failback: bool) -> None:
    """Keep what may stay, place the orphans, then rebalance by counts."""
    unassign_unsuitable(work)
    counts = work.counts()
    basic_allocate_unassigned(work, counts)
    if not no_ip_failback:
        _basic_failback(work, counts)


def _basic_failback(work: Work, counts: list[int]) -> None:
    """CTDB's basic_failback, with each taker set's min/max worked out once per pass."""
    limit = len(work.addresses) + 5
    # Addresses with the same takers share one (max, min) per pass.
    group_of: dict[tuple[int, ...], int] = {}
    groups = [group_of.setdefault(t, len(group_of)) for t in work.takers]
    members: list[set[int]] = [set() for _ in range(work.num_nodes)]
    for i, p in enumerate(work.pnn):
        if p != NO_NODE:
            members[p].add(i)
    retries = 0
    while retries < limit:
        seen: dict[int, tuple[int, int, int] | None] = {}
        move_from = NO_NODE
        for i, p in enumerate(work.pnn):
            if p == NO_NODE:
                continue
            g = groups[i]
            if g not in seen:
                takers = work.takers[i]
                if takers:
                    hi = max(takers, key=counts.__getitem__)
                    lo = min(takers, key=counts.__getitem__)
                    seen[g] = (hi, counts[hi], counts[lo])
                else:
                    seen[g] = None
            spread = seen[g]
            if spread is not None and spread[1] > spread[2] + 1:
                move_from = spread[0]
                break
        if move_from == NO_NODE:
            return
        # Move the first (in CTDB's order) address of the fullest node.
        first = min(members[move_from])
        find_takeover_node(work, first, counts)
        members[move_from].discard(first)
        members[work.pnn[first]].add(first)
        retries += 1
