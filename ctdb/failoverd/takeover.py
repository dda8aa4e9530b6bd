"""The safety rules of a takeover run, as pure functions.

* A node may keep (renew) its addresses only while it is on the lock-holding side and
  the leader has confirmed, within the detection time, that it hears this node.  So a
  node cut off, frozen or whose daemons died stops renewing, and the kernel drops its
  addresses when their lease (``valid_lft``) lapses, even if nothing on it can act.
* The leader moves an address away from a reachable node only after that node has
  released it (a graceful move never has it on two nodes), and away from an unreachable
  node only once its lease has surely lapsed: detection time + lease + a margin after
  the leader stopped confirming the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


def may_hold(*, me: int, leader: int | None, lock_side: bool, leader_heard: float,
             leader_hears: frozenset[int], now: float, detection: float) -> bool:
    """Whether this node may renew its address leases now."""
    if not lock_side or leader is None:
        return False
    if leader == me:
        return True
    return now - leader_heard <= detection and me in leader_hears


def free_after(lost_at: float, *, detection: float, lease: float, margin: float) -> float:
    """When the addresses of a node the leader stopped confirming at *lost_at* are surely
    gone: it may have renewed up to *detection* later, for *lease* seconds."""
    return lost_at + detection + lease + margin


@dataclass(frozen=True)
class Plan:
    releases: list[tuple[str, int]] = field(default_factory=list)  # (address, holder)
    takes: list[tuple[str, int]] = field(default_factory=list)  # (address, new holder)
    waiting: list[str] = field(default_factory=list)  # held by a lost node, lease live


def plan(current: Mapping[str, int | None], desired: Mapping[str, int | None],
         reachable: frozenset[int], free_at: Mapping[int, float], now: float) -> Plan:
    """Releases first, then takeovers; addresses of unreachable holders wait for their
    lease to lapse."""
    out = Plan()
    for address in sorted(set(current) | set(desired)):
        holder = current.get(address)
        target = desired.get(address)
        if holder == target:
            continue
        if holder is not None:
            if holder in reachable:
                out.releases.append((address, holder))
            elif now < free_at.get(holder, float("inf")):
                out.waiting.append(address)
                continue
        if target is not None:
            out.takes.append((address, target))
    return out
