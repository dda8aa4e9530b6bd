"""Membership and leadership as a pure state machine: inputs in, decisions out.

Inputs are heartbeats from peers, link changes from transportd, this node's own flag
changes and the cluster lock's state, each with the time it happened.  ``evaluate``
turns them into a ``Decision``: whom this node votes for and follows, whether it leads
or must step down, whether it should hold the cluster lock, and whether it is on the
lock-holding side.  No I/O and no clock here, so every rule is table-tested.

The rules (docs/cluster.md):

* A peer is DISCONNECTED when its transport link is down or nothing was heard from it
  for ``timeout`` seconds.  A node reports its own other flags; everyone sees them.
* Each node votes for a candidate among the nodes it hears that may lead (leader
  capability, not banned, stopped or deleted): the current leader while it still
  qualifies (no needless elections), else the lowest PNN.
* Without a cluster lock, a node leads when its candidate is itself and a majority of
  the nodes file votes for it; a node is on the "lock side" when it hears a majority.
* With a cluster lock, the candidate takes the lock and leads while it holds it; a node
  is on the lock side when it hears the lock-holding leader.
* Every leadership starts a new term, higher than any term seen.  A claim with an
  older term is ignored, and a leader that sees a newer term steps down: a thawed or
  healed ex-leader cannot give orders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ctdb.clusterd.flags import INACTIVE, NO_NODE, Capability, NodeFlag, Runstate
from ctdb.clusterd.messages import Heartbeat

# Flags a node sets on itself (everything but DISCONNECTED, DELETED and UNKNOWN).
OWN_FLAGS = (NodeFlag.UNHEALTHY | NodeFlag.PERMANENTLY_DISABLED | NodeFlag.BANNED
             | NodeFlag.STOPPED)
CANNOT_LEAD = NodeFlag.BANNED | NodeFlag.STOPPED | NodeFlag.DELETED | NodeFlag.DISCONNECTED


@dataclass
class Peer:
    pnn: int
    address: str
    deleted: bool = False
    link_up: bool = False
    last_heard: float = -math.inf
    hb: Heartbeat | None = None


@dataclass(frozen=True)
class Decision:
    vote: int
    leader: int  # whom this node follows (itself when it leads); NO_NODE if nobody
    leading: bool
    want_lock: bool
    lock_side: bool
    connected: frozenset[int]
    majority: bool


@dataclass
class ClusterState:
    pnn: int
    peers: dict[int, Peer]
    timeout: float
    lock_configured: bool = False
    capabilities: int = int(Capability.LEADER | Capability.LMASTER)
    flags: int = 0  # this node's own flags
    ban_until: float = 0.0
    runstate: Runstate = Runstate.INIT
    term: int = 0  # the highest term known
    lead_term: int = 0  # the term this node leads in (0: not leading)
    leader: int = NO_NODE
    generation: int = 1  # 1 is CTDB's INVALID generation
    recovery_mode: int = 0
    lock_held: bool = False
    vote: int = NO_NODE
    history: list[str] = field(default_factory=list)

    # -- inputs ------------------------------------------------------------------
    def on_heartbeat(self, hb: Heartbeat, now: float) -> None:
        peer = self.peers.get(hb.pnn)
        if peer is None or peer.deleted or hb.pnn == self.pnn:
            return
        peer.hb = hb
        peer.last_heard = now
        peer.link_up = True
        self.term = max(self.term, hb.term)

    def on_link(self, pnn: int, up: bool, now: float) -> None:
        peer = self.peers.get(pnn)
        if peer is None:
            return
        peer.link_up = up
        if not up:
            peer.last_heard = -math.inf

    def own_flags(self, now: float) -> int:
        flags = self.flags & int(OWN_FLAGS)
        if self.ban_until > now:
            flags |= NodeFlag.BANNED
        else:
            flags &= ~int(NodeFlag.BANNED)
        return flags

    # -- views -----------------------------------------------------------------------
    def is_connected(self, pnn: int, now: float) -> bool:
        if pnn == self.pnn:
            return True
        peer = self.peers.get(pnn)
        return (peer is not None and not peer.deleted and peer.link_up
                and now - peer.last_heard <= self.timeout)

    def flags_of(self, pnn: int, now: float) -> int:
        if pnn == self.pnn:
            return self.own_flags(now)
        peer = self.peers.get(pnn)
        if peer is None or peer.deleted:
            return int(NodeFlag.DELETED)
        if not self.is_connected(pnn, now) or peer.hb is None:
            reported = peer.hb.flags if peer.hb is not None else 0
            return int(NodeFlag.DISCONNECTED) | (reported & int(OWN_FLAGS))
        return peer.hb.flags & int(OWN_FLAGS)

    def capabilities_of(self, pnn: int) -> int:
        if pnn == self.pnn:
            return self.capabilities
        peer = self.peers.get(pnn)
        return peer.hb.capabilities if peer is not None and peer.hb is not None else 0

    def live_count(self) -> int:
        return sum(1 for p in self.peers.values() if not p.deleted)

    def active_nodes(self, now: float) -> list[int]:
        """Connected nodes that are not inactive: the vnnmap."""
        return sorted(p for p in self.peers if self.is_connected(p, now)
                      and not self.flags_of(p, now) & int(INACTIVE))

    def _may_lead(self, pnn: int, now: float) -> bool:
        return bool(self.capabilities_of(pnn) & Capability.LEADER) and not (
            self.flags_of(pnn, now) & int(CANNOT_LEAD))

    def _vote_of(self, pnn: int) -> int:
        if pnn == self.pnn:
            return self.vote
        peer = self.peers[pnn]
        return peer.hb.vote if peer.hb is not None else NO_NODE

    def _claims(self, pnn: int) -> bool:
        """Whether *pnn* currently claims to lead with the newest term."""
        peer = self.peers.get(pnn)
        if peer is None or peer.hb is None:
            return False
        hb = peer.hb
        return hb.leader == pnn and hb.term >= self.term and (
            hb.lock_held or not self.lock_configured)

    def _elected(self, connected: frozenset[int]) -> bool:
        """With a lock: holding it; without: a majority of the nodes file votes for us."""
        if self.lock_configured:
            return self.lock_held
        votes = sum(1 for p in connected if self._vote_of(p) == self.pnn)
        return 2 * votes > self.live_count()

    # -- the decision --------------------------------------------------------------
    def evaluate(self, now: float) -> Decision:
        connected = frozenset(p for p in self.peers if self.is_connected(p, now))
        majority = 2 * len(connected) > self.live_count()
        candidates = [p for p in connected if self._may_lead(p, now)]
        # Keep a leader that still qualifies: no needless elections.
        candidate = self.leader if self.leader in candidates else min(candidates,
                                                                      default=NO_NODE)
        if not self.lock_configured and not majority:
            candidate = NO_NODE
        self.vote = candidate
        want_lock = candidate == self.pnn and self.lock_configured
        leading = candidate == self.pnn and self._elected(connected)
        if leading and self.leader == self.pnn and self.term > self.lead_term:
            leading = False  # a newer term exists: someone else was elected meanwhile
        if leading and self.leader != self.pnn:
            self.term += 1
            self.lead_term = self.term
            self.history.append(f"node {self.pnn} leads, term {self.term}")
        if leading:
            leader = self.pnn
        else:
            followed = [p for p in connected if p != self.pnn and self._claims(p)]
            leader = max(followed, key=lambda p: self.peers[p].hb.term  # type: ignore[union-attr]
                         ) if followed else NO_NODE
        if self.leader == self.pnn and not leading:
            self.lead_term = 0
            self.history.append(f"node {self.pnn} steps down, term {self.term}")
        self.leader = leader
        if self.lock_configured:
            lock_side = (leading and self.lock_held) or (
                leader != NO_NODE and leader in connected and self._claims(leader))
        else:
            lock_side = majority
        return Decision(candidate, leader, leading, want_lock, lock_side, connected, majority)
