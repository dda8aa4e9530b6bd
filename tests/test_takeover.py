"""The takeover run's safety rules, from tables."""

from __future__ import annotations

import pytest

from ctdb.failoverd.takeover import free_after, may_hold, plan

A, B, C = "198.18.2.100", "198.18.2.101", "198.18.2.102"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"leader": 0, "lock_side": True}, True),  # the leader itself
        ({"leader": None, "lock_side": True}, False),
        ({"leader": 1, "lock_side": False}, False),
        ({"leader": 1, "lock_side": True, "leader_heard": 9.7}, True),
        ({"leader": 1, "lock_side": True, "leader_heard": 9.5}, False),  # leader too old
        ({"leader": 1, "lock_side": True, "leader_hears": frozenset({1, 2})}, False),
    ],
)
def test_may_hold(kwargs: dict[str, object], expected: bool) -> None:
    args: dict[str, object] = {"me": 0, "leader_heard": 10.0,
                               "leader_hears": frozenset({0, 1, 2}), "now": 10.0,
                               "detection": 0.4}
    args.update(kwargs)
    assert may_hold(**args) is expected  # type: ignore[arg-type]


def test_free_after_adds_detection_lease_and_margin() -> None:
    assert free_after(100.0, detection=0.4, lease=1.0, margin=0.2) == pytest.approx(101.6)


@pytest.mark.parametrize(
    ("current", "desired", "reachable", "free_at", "releases", "takes", "waiting"),
    [
        # nothing to do
        ({A: 0}, {A: 0}, {0, 1}, {}, [], [], []),
        # first allocation
        ({A: None, B: None}, {A: 0, B: 1}, {0, 1}, {}, [], [(A, 0), (B, 1)], []),
        # graceful move: release, then take
        ({A: 0}, {A: 1}, {0, 1}, {}, [(A, 0)], [(A, 1)], []),
        # holder lost, lease still live: wait, never two holders
        ({A: 2}, {A: 1}, {0, 1}, {2: 11.0}, [], [], [A]),
        # holder lost, lease lapsed: take without a release
        ({A: 2}, {A: 1}, {0, 1}, {2: 9.0}, [], [(A, 1)], []),
        # holder lost with no known loss time: wait
        ({A: 2}, {A: 1}, {0, 1}, {}, [], [], [A]),
        # no node may host it any more: release only
        ({A: 0, C: 1}, {A: None, C: 1}, {0, 1}, {}, [(A, 0)], [], []),
    ],
)
def test_plan(current: dict[str, int | None], desired: dict[str, int | None],
              reachable: set[int], free_at: dict[int, float], releases: list[object],
              takes: list[object], waiting: list[str]) -> None:
    p = plan(current, desired, frozenset(reachable), free_at, now=10.0)
    assert (p.releases, p.takes, p.waiting) == (releases, takes, waiting)
