"""Shared fixtures: a network namespace per test and in-process transportd nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ctdb.sandbox import netns
from tests.transport_lab import ADDRS, Nodes


@pytest.fixture
def lab() -> Iterator[None]:
    """This test's own network namespace, entered by the test's thread."""
    netns.clean_stale()
    with netns.entered(netns.unique("t"), [f"{a}/32" for a in ADDRS]):
        yield


@pytest.fixture
async def nodes(lab: None, tmp_path: Path) -> AsyncIterator[Nodes]:
    n = Nodes(tmp_path)
    yield n
    await n.stop_all()
