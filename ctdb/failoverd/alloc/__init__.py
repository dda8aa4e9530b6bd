"""Public IP allocation: CTDB's three algorithms as one pure function.

``allocate(request)`` decides which node should host each public address.  It is a
function of the request alone -- no I/O, no clock, no randomness -- so the leader can
run it, log it and test it freely.  The algorithm is picked by CTDB's
``IPAllocAlgorithm`` tunable (0 deterministic, 1 non-deterministic, 2 LCP2, anything
else LCP2) and follows CTDB 4.17's choices, ties included.
"""

from __future__ import annotations

from ctdb.failoverd.alloc.common import Work, merge_hosted
from ctdb.failoverd.alloc.deterministic import allocate_deterministic
from ctdb.failoverd.alloc.lcp2 import allocate_lcp2, distance
from ctdb.failoverd.alloc.model import (
    Algorithm,
    Allocation,
    AllocationRequest,
    Eligibility,
    IPAddress,
    NodeInfo,
    PublicIP,
    Tunables,
    eligibility,
)
from ctdb.failoverd.alloc.nondeterministic import allocate_nondeterministic

__all__ = [
    "Algorithm",
    "Allocation",
    "AllocationRequest",
    "Eligibility",
    "IPAddress",
    "NodeInfo",
    "PublicIP",
    "Tunables",
    "allocate",
    "distance",
    "eligibility",
    "merge_hosted",
]


def allocate(request: AllocationRequest) -> Allocation:
    """Every configured address mapped to the node that should host it (None: none may)."""
    work = Work(request)
    tunables = request.tunables
    match tunables.algorithm:
        case Algorithm.DETERMINISTIC:
            allocate_deterministic(work, request.home_nodes)
        case Algorithm.NONDETERMINISTIC:
            allocate_nondeterministic(work, tunables.no_ip_failback)
        case _:
            allocate_lcp2(work, tunables.no_ip_failback, request.force_rebalance)
    return work.result()
