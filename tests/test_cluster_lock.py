"""The cluster lock on a real etcd cluster: only the side holding the lease leads."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ctdb.sandbox.lab import Options, Sandbox
from tests.test_cluster import ALL_OK, agreed, views


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(Options(name=f"l{os.getpid() % 100000}", nodes=3, lock="etcd")) as sandbox:
        yield sandbox


def test_leader_holds_the_etcd_lock(sb: Sandbox) -> None:
    vs = agreed(sb, [0, 1, 2], ALL_OK)
    leader = vs[0]["leader"]
    assert vs[leader]["lock"]["held"]
    assert vs[leader]["lock"]["configured"].startswith("!")
    assert [p for p, v in vs.items() if v["lock"]["held"]] == [leader]
    assert all(v["lock"]["lock_side"] for v in vs.values())


def test_partition_only_the_lease_side_leads(sb: Sandbox) -> None:
    vs = agreed(sb, [0, 1, 2], ALL_OK)
    leader = vs[0]["leader"]
    others = [p for p in (0, 1, 2) if p != leader]
    sb.cut(leader, "private")
    try:
        expect = dict.fromkeys(others, "OK")
        expect[leader] = "DISCONNECTED|INACTIVE"
        vs = agreed(sb, others, expect)
        new = vs[others[0]]["leader"]
        assert new in others
        assert vs[new]["lock"]["held"]
        cut_off = views(sb, [leader])[leader]
        assert cut_off["leader"] is None
        assert not cut_off["lock"]["held"]
        assert not cut_off["lock"]["lock_side"], "the cut-off node knows it has no lock"
    finally:
        sb.heal(leader)
    vs = agreed(sb, [0, 1, 2], ALL_OK)
    assert {v["leader"] for v in vs.values()} == {new}
