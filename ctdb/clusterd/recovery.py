"""Recovery steps and banning: which steps run, and who gets banned for failing them.

A recovery step is data: a name, the service that runs it on every active node, and a
timeout.  Daemons that need a step during recovery (databased: pull and push the
databases) add a row to ``STEPS``; clusterd runs them in order on every active node at
once.  A node whose step fails or times out counts a failure; ``BanLimit`` failures in a
row get it banned for ``RecoveryBanPeriod`` seconds, as CTDB bans a node that keeps
failing recoveries.  A node that does not run the step's service skips it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from ctdb.protocol import Service


@dataclass(frozen=True)
class RecoveryStep:
    name: str
    service: int
    timeout: float


# The steps, in the order they run: eventd's startrecovery event first, its recovered
# event last (databased's database recovery will go between them).  Event scripts get
# EventScriptTimeout (30 s by default) and a little more for the round trip.
STEPS: tuple[RecoveryStep, ...] = (
    RecoveryStep("startrecovery", Service.EVENTD, 35.0),
    RecoveryStep("recovered", Service.EVENTD, 35.0),
)

BAN_LIMIT = 3  # failed recovery steps in a row before a node is banned


class Outcome(Enum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # the node does not run this step's service


@dataclass
class BanTracker:
    """Consecutive recovery failures per node; says when one must be banned."""

    limit: int = BAN_LIMIT
    failures: dict[int, int] = field(default_factory=dict)

    def record(self, pnn: int, outcome: Outcome) -> bool:
        """Count an outcome; True when *pnn* has now failed ``limit`` times in a row."""
        if outcome is Outcome.OK:
            self.failures.pop(pnn, None)
            return False
        if outcome is Outcome.SKIPPED:
            return False
        count = self.failures.get(pnn, 0) + 1
        if count >= self.limit:
            self.failures.pop(pnn, None)
            return True
        self.failures[pnn] = count
        return False


Runner = Callable[[int, RecoveryStep], Awaitable[Outcome]]


async def run_steps(steps: Iterable[RecoveryStep], nodes: Iterable[int], run: Runner,
                    tracker: BanTracker) -> tuple[set[int], set[int]]:
    """Run every step on every node (nodes in parallel, steps in order, each with its
    timeout); (nodes that failed a step, nodes to ban now)."""
    failed: set[int] = set()
    ban: set[int] = set()
    members = list(nodes)
    for step in steps:

        async def one(pnn: int, step: RecoveryStep = step) -> Outcome:
            try:
                async with asyncio.timeout(step.timeout):
                    return await run(pnn, step)
            except TimeoutError:
                return Outcome.FAILED

        outcomes = await asyncio.gather(*(one(p) for p in members))
        for pnn, outcome in zip(members, outcomes, strict=True):
            if outcome is Outcome.FAILED:
                failed.add(pnn)
            if tracker.record(pnn, outcome):
                ban.add(pnn)
        if failed:
            break  # later steps build on this one: retry the whole recovery
    return failed, ban
