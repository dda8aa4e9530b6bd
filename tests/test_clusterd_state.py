"""clusterd's membership and election rules, driven through a simulated network."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctdb.clusterd.flags import NO_NODE, Capability, NodeFlag
from ctdb.clusterd.messages import Heartbeat
from ctdb.clusterd.state import ClusterState, Decision, Peer

TIMEOUT = 0.4
STEP = 0.1


class Sim:
    """N nodes exchanging heartbeats every STEP over links that tests cut and heal."""

    def __init__(self, n: int, lock: bool = False, deleted: Iterable[int] = ()) -> None:
        self.n = n
        self.now = 0.0
        self.down: set[frozenset[int]] = set()
        self.dead: set[int] = set()
        self.lock_holder: int | None = None
        self.lock = lock
        self.nodes = {
            pnn: ClusterState(
                pnn,
                {p: Peer(p, f"198.18.1.{p + 1}", deleted=p in set(deleted)) for p in range(n)},
                TIMEOUT, lock_configured=lock)
            for pnn in range(n) if pnn not in set(deleted)
        }
        self.decisions: dict[int, Decision] = {}

    def link(self, a: int, b: int) -> bool:
        return (a not in self.dead and b not in self.dead
                and frozenset((a, b)) not in self.down)

    def cut(self, a: int, b: int) -> None:
        self.down.add(frozenset((a, b)))

    def isolate(self, a: int) -> None:
        for b in self.nodes:
            if b != a:
                self.cut(a, b)

    def heal(self) -> None:
        self.down.clear()

    def heartbeat(self, s: ClusterState) -> Heartbeat:
        d = self.decisions.get(s.pnn)
        return Heartbeat(
            pnn=s.pnn, flags=s.own_flags(self.now), runstate=int(s.runstate),
            capabilities=s.capabilities, term=s.term, leader=s.leader, vote=s.vote,
            generation=s.generation, recovery_mode=0, lock_held=s.lock_held,
            connected=sorted(d.connected) if d else [])

    def step(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            self.now += STEP
            live = [s for p, s in self.nodes.items() if p not in self.dead]
            beats = {s.pnn: self.heartbeat(s) for s in live}
            for s in live:
                for p, hb in beats.items():
                    if p != s.pnn and self.link(p, s.pnn):
                        s.on_heartbeat(hb, self.now)
                for p in self.nodes:
                    # The transport notices a dead process at once; a cut only by silence.
                    if p != s.pnn and p in self.dead:
                        s.on_link(p, False, self.now)
            for s in live:
                d = s.evaluate(self.now)
                self.decisions[s.pnn] = d
                if self.lock:
                    self._lock(s, d)

    def _lock(self, s: ClusterState, d: Decision) -> None:
        if d.want_lock and self.lock_holder in (None, s.pnn):
            self.lock_holder = s.pnn
            s.lock_held = True
        elif not d.want_lock and self.lock_holder == s.pnn:
            self.lock_holder = None
            s.lock_held = False

    def kill(self, pnn: int) -> None:
        self.dead.add(pnn)
        if self.lock_holder == pnn:
            self.lock_holder = None  # the lock helper dies with its node

    def leaders(self) -> set[int]:
        return {p for p, d in self.decisions.items() if d.leading and p not in self.dead}

    def followed(self) -> dict[int, int]:
        return {p: s.leader for p, s in self.nodes.items() if p not in self.dead}


def settle(sim: Sim) -> None:
    sim.step(int(TIMEOUT / STEP) + 4)


def test_cold_start_elects_one_leader_everyone_follows() -> None:
    sim = Sim(3)
    settle(sim)
    assert sim.leaders() == {0}
    assert sim.followed() == {0: 0, 1: 0, 2: 0}
    assert all(d.lock_side for d in sim.decisions.values())


def test_dead_leader_is_replaced_with_a_higher_term() -> None:
    sim = Sim(3)
    settle(sim)
    term = sim.nodes[0].term
    sim.kill(0)
    sim.step(3)  # detection at once (the link closes), one round of votes, one of claims
    assert sim.leaders() == {1}
    assert sim.nodes[1].term > term
    assert sim.followed() == {1: 1, 2: 1}


def test_silent_cut_of_the_leader_then_heal_keeps_the_new_leader() -> None:
    sim = Sim(3)
    settle(sim)
    sim.isolate(0)
    settle(sim)
    assert sim.leaders() == {1}
    assert not sim.decisions[0].lock_side, "a node alone in three has no majority"
    assert sim.nodes[0].leader == NO_NODE
    sim.heal()
    settle(sim)
    assert sim.leaders() == {1}, "the healed ex-leader follows; no needless election"
    assert sim.followed() == {0: 1, 1: 1, 2: 1}


def test_partial_partition_never_gives_two_leaders() -> None:
    sim = Sim(3)
    settle(sim)
    sim.cut(0, 1)  # 0 and 1 cannot talk; both still hear 2
    for _ in range(20):
        sim.step()
        assert len(sim.leaders()) <= 1


def test_minority_never_leads_without_a_lock() -> None:
    sim = Sim(5)
    settle(sim)
    sim.cut(0, 2)
    sim.cut(0, 3)
    sim.cut(0, 4)
    sim.cut(1, 2)
    sim.cut(1, 3)
    sim.cut(1, 4)
    settle(sim)
    assert sim.leaders() == {2}
    assert not sim.decisions[0].lock_side
    assert not sim.decisions[1].lock_side
    assert all(sim.decisions[p].lock_side for p in (2, 3, 4))


def test_with_a_lock_the_survivor_of_two_leads() -> None:
    sim = Sim(2, lock=True)
    settle(sim)
    assert sim.leaders() == {0}
    assert sim.lock_holder == 0
    sim.kill(0)
    sim.step(3)
    assert sim.leaders() == {1}
    assert sim.lock_holder == 1
    assert sim.decisions[1].lock_side


def test_with_a_lock_the_cut_off_side_knows_it() -> None:
    sim = Sim(3, lock=True)
    settle(sim)
    sim.isolate(2)
    settle(sim)
    assert sim.leaders() == {0}
    assert not sim.decisions[2].lock_side
    assert sim.decisions[1].lock_side


@pytest.mark.parametrize("flag", [NodeFlag.BANNED, NodeFlag.STOPPED])
def test_banned_or_stopped_node_does_not_lead(flag: NodeFlag) -> None:
    sim = Sim(3)
    sim.nodes[0].flags = int(flag)
    if flag == NodeFlag.BANNED:
        sim.nodes[0].ban_until = 1e9
    settle(sim)
    assert sim.leaders() == {1}
    assert sim.nodes[2].flags_of(0, sim.now) == int(flag)


def test_node_without_leader_capability_does_not_lead() -> None:
    sim = Sim(3)
    sim.nodes[0].capabilities = int(Capability.LMASTER)
    settle(sim)
    assert sim.leaders() == {1}


def test_flags_are_seen_by_every_node_and_disconnect_is_added() -> None:
    sim = Sim(3)
    settle(sim)
    sim.nodes[1].flags = int(NodeFlag.PERMANENTLY_DISABLED)
    sim.step()
    assert {sim.nodes[p].flags_of(1, sim.now) for p in (0, 2)} == {
        int(NodeFlag.PERMANENTLY_DISABLED)}
    sim.isolate(1)
    settle(sim)
    assert sim.nodes[0].flags_of(1, sim.now) == int(
        NodeFlag.DISCONNECTED | NodeFlag.PERMANENTLY_DISABLED)
    assert sim.nodes[0].active_nodes(sim.now) == [0, 2]


def test_ban_expires() -> None:
    s = ClusterState(0, {0: Peer(0, "198.18.1.1")}, TIMEOUT)
    s.ban_until = 10.0
    assert s.own_flags(9.9) == int(NodeFlag.BANNED)
    assert s.own_flags(10.1) == 0


def test_deleted_nodes_do_not_count_for_majority() -> None:
    sim = Sim(4, deleted=[3])
    settle(sim)
    sim.kill(2)
    settle(sim)
    assert sim.leaders() == {0}, "2 of 3 live nodes are a majority"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["cut", "heal", "kill", "step"]),
                          st.integers(0, 4), st.integers(0, 4)), max_size=25))
def test_no_two_leaders_share_a_term_and_stable_networks_converge(
        actions: list[tuple[str, int, int]]) -> None:
    sim = Sim(5)
    settle(sim)
    for action, a, b in actions:
        if action == "cut" and a != b:
            sim.cut(a, b)
        elif action == "heal":
            sim.heal()
        elif action == "kill" and len(sim.dead) < 2:
            sim.kill(a)
        sim.step()
        terms = [sim.nodes[p].lead_term for p in sim.leaders()]
        assert len(terms) == len(set(terms)), "two leaders in one term"
    sim.heal()
    settle(sim)
    assert len(sim.leaders()) == 1
    leader = next(iter(sim.leaders()))
    assert set(sim.followed().values()) == {leader}
