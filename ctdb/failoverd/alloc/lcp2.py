"""IPAllocAlgorithm=2 (the default): LCP2, CTDB's "longest common prefix squared" heuristic.

Addresses that are close (long common prefix, so probably the same subnet) cost a lot
when they share a node.  A node's *imbalance* is the sum, over every pair of addresses
it hosts, of ``distance(a, b) ** 2``; the distance is CTDB's: over the four 32-bit
words of the 128-bit address (IPv4 is ``::a.b.c.d``), 32 per equal word plus the
leading zero bits of the XOR of each unequal word.

1. Unassign what may not stay (as every algorithm does).
2. Place orphans: repeatedly put the (address, node) pair with the smallest added cost
   -- ties to the first address in CTDB's order, then the lowest PNN.
3. Unless NoIPFailback: *rebalance candidates* are the nodes that host nothing after
   step 1 (they just came back), plus ``force_rebalance``.  Repeatedly take the most
   imbalanced node (ties: lowest PNN) and move the one address to a candidate that most
   lowers source+destination imbalance, provided the destination ends up below the
   source's old imbalance and the address costs less there; stop when no node has
   such a move.  Nodes that were already hosting never receive addresses, so healthy
   nodes do not churn.

CTDB recomputes every sum from scratch for every candidate (cubic and worse).  Here
the same choices come from running sums kept up to date as addresses move:

* ``own[i]``: the cost of address *i* on its own node (sum of weights to the others
  there) -- a node's imbalance is half the sum of ``own`` over its addresses, and the
  cost of taking *i* away is ``own[i]``;
* step 2 keeps, per node, the cost of every still-unassigned address there, and the
  minimum of each such column; a placement adds one weight vector to one column;
* step 3 keeps, per candidate node, the cost of every address there; a move adds one
  weight vector to the destination's column and subtracts it from the source's.

The weight of a pair depends only on the pair, so one vector of weights per moved
address is all a move costs.  CTDB keeps these sums in uint32_t; we keep exact
integers, which only differs once a sum CTDB forms reaches 2**32 (about 800 addresses of
one /22 on one node), where CTDB's arithmetic wraps.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Callable, Iterable, Sequence
from heapq import heapify, heappop
from operator import add, itemgetter, sub
from typing import TypeVar

from ctdb.failoverd.alloc.common import NO_NODE, Work, unassign_unsuitable

_T = TypeVar("_T")
_LOW32 = 0xFFFFFFFF
_FAR = math.inf  # cost of a placement that is not allowed
# Weight by the bit length of an XOR below 2**32 (both IPv4, the fast path).
_BY_BITS = [(128 - bits) ** 2 for bits in range(33)]
_SQUARE = [d * d for d in range(129)]


def distance(a: int, b: int) -> int:
    """CTDB's ip_distance of two 128-bit keys (IPv4 as ``::a.b.c.d``).

    Not a plain common-prefix length: every 32-bit word counts on its own, so two IPv6
    addresses that differ in the first word still score for equal later words.
    """
    x = a ^ b
    return 128 - sum(((x >> s) & _LOW32).bit_length() for s in (96, 64, 32, 0))


def _weight(x: int) -> int:
    """The weight of a pair from the XOR of their keys."""
    d = 128 - sum(((x >> s) & _LOW32).bit_length() for s in (96, 64, 32, 0))
    return d * d


# _BY_PREFIX[c][bits]: the weight of a pair whose first 96 bits contribute c to the
# distance and whose last words XOR to a number of *bits* bits.
_BY_PREFIX = [[(c + 32 - bits) ** 2 for bits in range(33)] for c in range(97)]


class _Keys:
    """Keys in CTDB's (descending) order, as runs sharing their first 96 bits.

    Sorted keys with equal first 96 bits are adjacent, and within such a run the
    distance to another address only varies in the last word, so a whole run is one
    table lookup per address: IPv4 (one run) and IPv6 numbered within a /96 take the
    same fast path.
    """

    __slots__ = ("keys", "runs")

    def __init__(self, keys: list[int]) -> None:
        self.keys = keys
        self.runs: list[tuple[int, list[int]]] = []
        for k in keys:
            high = k >> 32
            if not self.runs or self.runs[-1][0] != high:
                self.runs.append((high, []))
            self.runs[-1][1].append(k & _LOW32)


class _Weights:
    """Vectors of pair weights ``distance(a, b) ** 2``."""

    __slots__ = ("all",)

    def __init__(self, keys: list[int]) -> None:
        self.all = _Keys(keys)

    @staticmethod
    def vector(key: int, others: _Keys) -> list[int]:
        """Weights from *key* to each of *others* (an address to itself weighs 128**2)."""
        bits = int.bit_length
        if len(others.runs) * 4 > len(others.keys):  # short runs: one address at a time
            return [_weight(key ^ k) for k in others.keys]
        high, low = key >> 32, key & _LOW32
        out: list[int] = []
        for run_high, lows in others.runs:
            x = high ^ run_high
            table = _BY_PREFIX[96 - bits(x >> 64) - bits((x >> 32) & _LOW32) - bits(x & _LOW32)]
            out += [table[bits(low ^ k)] for k in lows]
        return out

    def full(self, i: int) -> list[int]:
        """Weights from address *i* to every address, with its own entry zeroed."""
        v = self.vector(self.all.keys[i], self.all)
        v[i] = 0
        return v


def allocate_lcp2(work: Work, no_ip_failback: bool, force_rebalance: Iterable[int]) -> None:
    """Run CTDB's LCP2: unassign, place orphans, then (unless NoIPFailback) rebalance."""
    unassign_unsuitable(work)
    candidates = [True] * work.num_nodes
    for p in work.pnn:
        if p != NO_NODE:
            candidates[p] = False
    for pnn in force_rebalance:
        if 0 <= pnn < work.num_nodes:
            candidates[pnn] = True
    failback = not no_ip_failback and any(candidates)
    run = _Lcp2(work, candidates if failback else [False] * work.num_nodes)
    run.place_unassigned()
    if failback:
        run.failback()


class _Lcp2:
    """One LCP2 run: who hosts what, and the running sums the choices are made from."""

    __slots__ = ("column", "forbidden", "imbalance", "members", "own", "targets", "weights", "work")

    def __init__(self, work: Work, candidates: list[bool]) -> None:
        self.work = work
        weights = self.weights = _Weights(work.keys)
        keys = work.keys
        # Each node's addresses, kept sorted: index order is CTDB's list order.
        self.members: list[list[int]] = [[] for _ in range(work.num_nodes)]
        for i, p in enumerate(work.pnn):
            if p != NO_NODE:
                self.members[p].append(i)
        # own[i]: cost of address i on its node (weights to the node's other addresses).
        self.own = [0] * len(keys)
        for group in self.members:
            group_keys = _Keys([keys[i] for i in group])
            for i in group:
                self.own[i] = sum(weights.vector(keys[i], group_keys)) - 128 * 128
        self.imbalance = [sum(self.own[i] for i in group) // 2 for group in self.members]
        # Rebalance candidates that may take each address, in PNN order ...
        self.targets = [tuple(j for j in t if candidates[j]) for t in work.takers]
        # ... and column[j][i]: cost of address i on candidate j (its own entry excluded),
        # kept from here on because placing orphans changes it too.
        self.column: dict[int, list[int]] = {}
        for j in sorted({j for t in self.targets for j in t}):
            col = [0] * len(keys)
            for b in self.members[j]:
                col = list(map(add, col, weights.full(b)))
            self.column[j] = col
        # forbidden[j][i]: _FAR where candidate j may not take address i (groups).
        self.forbidden: dict[int, list[float]] = {}
        for j in self.column:
            if any(j not in t for t in self.targets):
                self.forbidden[j] = [0 if j in t else _FAR for t in self.targets]

    def join(self, x: int, m: int) -> list[int] | None:
        """Book address *x* onto node *m*: own costs, imbalance, members, candidate column.

        Returns the full weight vector of *x* when one was needed anyway.
        """
        keys = self.work.keys
        group = self.members[m]
        full = None
        if m in self.column:
            full = self.weights.full(x)
            self.column[m] = list(map(add, self.column[m], full))
            for b in group:
                self.own[b] += full[b]
        else:
            weights = self.weights.vector(keys[x], _Keys([keys[b] for b in group]))
            for b, w in zip(group, weights, strict=True):
                self.own[b] += w
        insort(group, x)
        self.work.pnn[x] = m
        return full

    def place_unassigned(self) -> None:
        """Step 2: place orphans one at a time at the cheapest (address, node) pair."""
        work = self.work
        orphans = [i for i, p in enumerate(work.pnn) if p == NO_NODE and work.takers[i]]
        if orphans:
            _Orphans(self, orphans).run()

    def failback(self) -> None:
        """Step 3: move addresses onto candidate nodes while that lowers imbalance."""
        if not self.column:
            return
        imbalance = self.imbalance
        pnns = range(self.work.num_nodes)
        while True:
            # Afresh from PNN order each time: equal imbalances go lowest PNN first, as
            # CTDB's qsort (glibc's is a stable merge sort) leaves them.
            for src in sorted(pnns, key=imbalance.__getitem__, reverse=True):
                if imbalance[src] == 0:
                    return  # every node left hosts at most one address
                move = self._best_move(src)
                if move is not None:
                    break
            else:
                return
            self._apply(move)

    def _best_move(self, src: int) -> tuple[int, int, int, int] | None:
        """CTDB's lcp2_failback_candidate: the best single move off *src*, if any helps.

        A move of address i to dst is allowed when dst ends below src's imbalance and i
        costs less on dst than on src; CTDB keeps the first strictly best one in
        (address, PNN) order, i.e. the least (total, address, dst).  For one dst the
        total is a constant plus ``column[dst][i] - own[i]``, so each destination is one
        vector pass over src's addresses instead of a Python loop.
        """
        members = self.members[src]
        if not members:
            return None
        imbalance = self.imbalance
        src_now = imbalance[src]
        pick = _picker(members)
        owns = pick(self.own)
        best: tuple[int, int, int, int] | None = None
        best_key = (0, 0, 0)
        for dst, col in self.column.items():
            cap = src_now - imbalance[dst]  # i's cost on dst must stay below this
            if dst == src or cap <= 0:
                continue
            costs = pick(col)
            mask = self.forbidden.get(dst)
            allowed = costs if mask is None else tuple(map(add, costs, pick(mask)))
            deltas = list(map(sub, allowed, owns))
            low = min(deltas)
            if low >= 0:
                continue  # nothing is cheaper on dst than where it is
            pos = deltas.index(low)
            if costs[pos] >= cap:  # the cheapest move overloads dst: look further
                found = _first_valid(deltas, costs, cap)
                if found is None:
                    continue
                pos = found
            i = members[pos]
            dst_after = imbalance[dst] + int(costs[pos])
            src_after = src_now - self.own[i]
            key = (src_after + dst_after, i, dst)
            if best is None or key < best_key:
                best = (i, dst, src_after, dst_after)
                best_key = key
        return best

    def _apply(self, move: tuple[int, int, int, int]) -> None:
        x, dst, src_after, dst_after = move
        src = self.work.pnn[x]
        self.members[src].remove(x)
        self.own[x] = self.column[dst][x]
        # Destinations are candidates, which have columns, so join() gives the vector.
        full = self.join(x, dst) or self.weights.full(x)
        for b in self.members[src]:
            self.own[b] -= full[b]
        if src in self.column:
            self.column[src] = list(map(sub, self.column[src], full))
        self.imbalance[src] = src_after
        self.imbalance[dst] = dst_after


class _Orphans:
    """Step 2's bookkeeping: per node, what each orphan would cost there, and the minimum.

    ``cost[j][u]`` is the cost of ``orphans[u]`` on node j (``_FAR`` when j may not take
    it, or once it is placed).  Placing an orphan on m changes column m only, so only
    column m is rescanned; other columns whose minimum was the placed orphan take the
    next one from a heap built the first time it is needed.  Columns are compacted when
    half their entries are dead, so later steps handle shorter vectors.
    """

    __slots__ = ("alive", "best", "cost", "heaps", "keys", "lcp2", "live", "orphans")

    def __init__(self, run: _Lcp2, orphans: list[int]) -> None:
        self.lcp2 = run
        self.orphans = orphans
        keys = run.work.keys
        self.keys = _Keys([keys[i] for i in orphans])
        self.cost: dict[int, list[float]] = {}
        for u, i in enumerate(orphans):
            for j in run.work.takers[i]:
                if j not in self.cost:
                    self.cost[j] = [_FAR] * len(orphans)
                self.cost[j][u] = 0
        for j, start in self.cost.items():  # replaces values only, never keys
            total = start
            for b in run.members[j]:
                total = list(map(add, total, run.weights.vector(keys[b], self.keys)))
            self.cost[j] = total
        self.alive = [True] * len(orphans)
        self.live = len(orphans)
        self.heaps: dict[int, list[tuple[float, int]] | None] = dict.fromkeys(self.cost)
        self.best = {j: _column_min(c) for j, c in self.cost.items()}

    def run(self) -> None:
        """Place until every orphan is placed or none left has a taker."""
        lcp2 = self.lcp2
        while self.live:
            pick: tuple[float, int, int] | None = None
            for j, (value, u) in self.best.items():
                if value != _FAR and (pick is None or (value, u, j) < pick):
                    pick = (value, u, j)
            if pick is None:
                return  # what is left has no taker
            _, u, m = pick
            x = self.orphans[u]
            added = int(self.cost[m][u])
            lcp2.own[x] = added
            lcp2.imbalance[m] += added
            full = lcp2.join(x, m)
            if full is None:
                vec = lcp2.weights.vector(lcp2.work.keys[x], self.keys)
            else:
                vec = [full[i] for i in self.orphans]
            self.cost[m] = list(map(add, self.cost[m], vec))
            self.heaps[m] = None
            self.alive[u] = False
            self.live -= 1
            for j, column in self.cost.items():
                column[u] = _FAR
                if j == m:
                    self.best[j] = _column_min(column)
                elif self.best[j][1] == u:
                    self.best[j] = self._next_min(j, u)
            if 32 < len(self.orphans) > 2 * self.live:
                self._compact()

    def _next_min(self, j: int, gone: int) -> tuple[float, int]:
        """Column j's new minimum now that orphan *gone*, its old minimum, is placed."""
        column = self.cost[j]
        value = self.best[j][0]
        # Anything before *gone* cost more; an equal cost after it is the next minimum.
        try:
            return value, column.index(value, gone + 1)
        except ValueError:
            pass
        heap = self.heaps[j]
        if heap is None:
            heap = list(zip(column, range(len(column)), strict=True))
            heapify(heap)
            self.heaps[j] = heap
        while heap:
            value, u = heap[0]
            if value == _FAR or column[u] != _FAR:
                return value, u
            heappop(heap)  # placed since the heap was built
        return _FAR, 0

    def _compact(self) -> None:
        keep = [u for u, a in enumerate(self.alive) if a]
        self.orphans = [self.orphans[u] for u in keep]
        self.keys = _Keys([self.keys.keys[u] for u in keep])
        self.alive = [True] * len(keep)
        for j, column in self.cost.items():
            self.cost[j] = [column[u] for u in keep]
        self.heaps = dict.fromkeys(self.cost)
        self.best = {j: _column_min(c) for j, c in self.cost.items()}


def _picker(members: list[int]) -> Callable[[Sequence[_T]], tuple[_T, ...]]:
    """A C-speed gather of *members*' entries from a list, always as a tuple."""
    if len(members) == 1:
        only = members[0]
        return lambda values: (values[only],)
    return itemgetter(*members)


def _first_valid(deltas: list[float], costs: Sequence[float], cap: int) -> int | None:
    """Position of the least negative delta whose cost is under *cap* (first on ties)."""
    found: int | None = None
    for pos, (delta, cost) in enumerate(zip(deltas, costs, strict=True)):
        if delta < 0 and cost < cap and (found is None or delta < deltas[found]):
            found = pos
    return found


def _column_min(column: list[float]) -> tuple[float, int]:
    if not column:
        return _FAR, 0
    value = min(column)
    return value, column.index(value)
