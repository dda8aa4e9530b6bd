"""Recovery steps and banning, from tables."""

from __future__ import annotations

import asyncio

import pytest

from ctdb.clusterd.recovery import BanTracker, Outcome, RecoveryStep, run_steps

STEP_A = RecoveryStep("a", 100, 0.2)
STEP_B = RecoveryStep("b", 101, 0.2)


def test_three_failures_in_a_row_ban_a_node() -> None:
    t = BanTracker(limit=3)
    assert [t.record(2, Outcome.FAILED) for _ in range(3)] == [False, False, True]
    assert t.failures == {}, "the count starts again after a ban"


def test_a_success_or_skip_in_between() -> None:
    t = BanTracker(limit=3)
    t.record(1, Outcome.FAILED)
    t.record(1, Outcome.FAILED)
    assert t.record(1, Outcome.OK) is False
    assert t.failures == {}
    t.record(1, Outcome.FAILED)
    assert t.record(1, Outcome.SKIPPED) is False
    assert t.failures == {1: 1}, "a skipped step neither counts nor forgives"


@pytest.mark.parametrize(
    ("results", "failed", "ban", "ran_b"),
    [
        ({}, set(), set(), True),
        ({(1, "a"): Outcome.FAILED}, {1}, set(), False),
        ({(2, "a"): Outcome.SKIPPED}, set(), set(), True),
        ({(0, "b"): "hang"}, {0}, set(), True),
    ],
)
def test_run_steps(results: dict[tuple[int, str], object], failed: set[int], ban: set[int],
                   ran_b: bool) -> None:
    seen: list[tuple[int, str]] = []

    async def run(pnn: int, step: RecoveryStep) -> Outcome:
        seen.append((pnn, step.name))
        result = results.get((pnn, step.name), Outcome.OK)
        if result == "hang":
            await asyncio.Event().wait()
        assert isinstance(result, Outcome)
        return result

    got = asyncio.run(run_steps([STEP_A, STEP_B], [0, 1, 2], run, BanTracker()))
    assert got == (failed, ban)
    assert any(name == "b" for _, name in seen) is ran_b


def test_repeated_recovery_failures_end_in_a_ban() -> None:
    tracker = BanTracker(limit=2)

    async def run(pnn: int, step: RecoveryStep) -> Outcome:
        return Outcome.FAILED if pnn == 2 else Outcome.OK

    first = asyncio.run(run_steps([STEP_A], [0, 1, 2], run, tracker))
    second = asyncio.run(run_steps([STEP_A], [0, 1, 2], run, tracker))
    assert first == ({2}, set())
    assert second == ({2}, {2})
