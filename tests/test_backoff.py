"""masterd's restart decisions, from tables."""

from __future__ import annotations

import pytest

from ctdb.masterd.backoff import Backoff, describe_exit

B = Backoff(first=0.1, factor=2.0, cap=30.0, stable=60.0)


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.4), (6, 3.2), (9, 25.6), (10, 30.0), (50, 30.0)],
)
def test_delay_grows_exponentially_up_to_the_cap(failures: int, delay: float) -> None:
    assert B.delay(failures) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("failures", "ran_for", "after"),
    [(0, 0.5, 1), (3, 2.0, 4), (3, 59.9, 4), (7, 60.0, 1), (7, 3600.0, 1)],
)
def test_a_long_healthy_run_resets_the_count(failures: int, ran_for: float,
                                             after: int) -> None:
    assert B.next_failures(failures, ran_for) == after


@pytest.mark.parametrize(
    ("code", "text"),
    [(0, "exited with code 0"), (3, "exited with code 3"),
     (-9, "killed by signal 9 (SIGKILL)"), (-15, "killed by signal 15 (SIGTERM)"),
     (-99, "killed by signal 99 (unknown)")],
)
def test_exit_descriptions(code: int, text: str) -> None:
    assert describe_exit(code) == text
