"""IPAllocAlgorithm=0: every address has a home node and goes back to it.

The home of the i-th address in CTDB's order is node ``i % len(nodes)``, or the node
named in ``home_nodes`` (newer CTDB; ignored when the PNN is out of range).  Addresses
whose home may not host them go to the least loaded node that may.  There is no
failback step and NoIPFailback is ignored: returning home *is* the failback.
"""

from __future__ import annotations

from collections.abc import Mapping

from ctdb.failoverd.alloc.common import Work, basic_allocate_unassigned, unassign_unsuitable
from ctdb.failoverd.alloc.model import IPAddress


def allocate_deterministic(work: Work, home_nodes: Mapping[IPAddress, int]) -> None:
    """Reset every address to its home node, then place the ones that cannot stay."""
    n = work.num_nodes
    if n == 0:
        return
    for i, address in enumerate(work.addresses):
        home = home_nodes.get(address)
        work.pnn[i] = home if home is not None and 0 <= home < n else i % n
    unassign_unsuitable(work)
    basic_allocate_unassigned(work, work.counts())
