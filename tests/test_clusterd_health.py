"""The one rule that turns health reports into UNHEALTHY."""

from __future__ import annotations

import pytest

from ctdb.clusterd.health import is_unhealthy, unhealthy_sources


@pytest.mark.parametrize(
    ("reports", "unhealthy", "sources"),
    [
        ({}, False, []),
        ({"monitor": (True, "")}, False, []),
        ({"monitor": (False, "50.samba failed")}, True, ["monitor: 50.samba failed"]),
        ({"monitor": (True, ""), "service:smbd": (False, "failed")}, True,
         ["service:smbd: failed"]),
        ({"b": (False, ""), "a": (False, "x")}, True, ["a: x", "b"]),
    ],
)
def test_any_unhealthy_source_makes_the_node_unhealthy(
        reports: dict[str, tuple[bool, str]], unhealthy: bool, sources: list[str]) -> None:
    assert is_unhealthy(reports) is unhealthy
    assert unhealthy_sources(reports) == sources
