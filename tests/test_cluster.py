"""clusterd in a real 3-node sandbox: membership, leader, flags, faults."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from ctdb.sandbox.lab import Options, Sandbox, wait_for


def views(sb: Sandbox, nodes: list[int] | None = None) -> dict[int, dict[str, Any]]:
    """Every (reachable) node's own ``ctdb --json status``."""
    out = {}
    for pnn in nodes if nodes is not None else [n.pnn for n in sb.topo.nodes]:
        r = sb.ctdb(pnn, "--json", "status", check=False, timeout=10)
        if r.returncode == 0:
            out[pnn] = json.loads(r.stdout)
    return out


def states(view: dict[str, Any]) -> dict[int, str]:
    return {n["pnn"]: n["state"] for n in view["nodes"]}


def agreed(sb: Sandbox, nodes: list[int], expect: dict[int, str]) -> dict[int, dict[str, Any]]:
    """Wait until every node of *nodes* sees *expect* and the same leader and generation."""

    def check() -> dict[int, dict[str, Any]] | None:
        vs = views(sb, nodes)
        if len(vs) != len(nodes):
            return None
        if any(states(v) != expect for v in vs.values()):
            return None
        if len({(v["leader"], v["generation"]) for v in vs.values()}) != 1:
            return None
        if next(iter(vs.values()))["leader"] is None:
            return None
        return vs

    return wait_for(f"nodes {nodes} to agree on {expect}", check, timeout=20)


ALL_OK = {0: "OK", 1: "OK", 2: "OK"}


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(Options(name=f"k{os.getpid() % 100000}", nodes=3)) as sandbox:
        yield sandbox


def test_cold_start_to_all_ok(sb: Sandbox) -> None:
    vs = agreed(sb, [0, 1, 2], ALL_OK)
    assert all(v["recovery_mode"] == "NORMAL" for v in vs.values())
    assert sb.ctdb(0, "nodestatus", "all", check=False).returncode == 0
    assert sb.ctdb(1, "runstate").stdout.strip() == "RUNNING"
    text = sb.ctdb(2, "status").stdout
    assert "Generation:INVALID" not in text
    assert "Leader:UNKNOWN" not in text


def test_killed_node_is_disconnected_and_rejoins_with_new_generation(sb: Sandbox) -> None:
    before = agreed(sb, [0, 1, 2], ALL_OK)[0]["generation"]
    sb.kill(2)
    agreed(sb, [0, 1], {0: "OK", 1: "OK", 2: "DISCONNECTED|INACTIVE"})
    failed = sb.ctdb(0, "nodestatus", "all", check=False)
    assert failed.returncode == 1, "nodestatus exits with the flags of the nodes"
    sb.start(2)
    after = agreed(sb, [0, 1, 2], ALL_OK)[0]["generation"]
    assert after != before


def test_cut_and_freeze_are_detected_and_healed(sb: Sandbox) -> None:
    agreed(sb, [0, 1, 2], ALL_OK)
    sb.cut(2, "private")
    try:
        agreed(sb, [0, 1], {0: "OK", 1: "OK", 2: "DISCONNECTED|INACTIVE"})
    finally:
        sb.heal(2)
    agreed(sb, [0, 1, 2], ALL_OK)
    sb.freeze(1)
    try:
        agreed(sb, [0, 2], {0: "OK", 1: "DISCONNECTED|INACTIVE", 2: "OK"})
    finally:
        sb.thaw(1)
    agreed(sb, [0, 1, 2], ALL_OK)


def test_leader_killed_a_new_leader_takes_over_and_flags_survive(sb: Sandbox) -> None:
    vs = agreed(sb, [0, 1, 2], ALL_OK)
    leader = vs[0]["leader"]
    others = [p for p in (0, 1, 2) if p != leader]
    sb.ctdb(others[1], "disable")
    expect = dict(ALL_OK)
    expect[others[1]] = "DISABLED"
    agreed(sb, [0, 1, 2], expect)
    sb.kill(leader)
    expect[leader] = "DISCONNECTED|INACTIVE"
    vs = agreed(sb, others, expect)
    assert vs[others[0]]["leader"] in others
    assert vs[others[0]]["term"] > 0
    sb.start(leader)
    expect[leader] = "OK"
    vs = agreed(sb, [0, 1, 2], expect)
    assert len({v["leader"] for v in vs.values()}) == 1
    sb.ctdb(others[1], "enable")
    agreed(sb, [0, 1, 2], ALL_OK)


@pytest.mark.parametrize(("on", "off", "word"), [("stop", "continue", "STOPPED|INACTIVE"),
                                                  ("ban 300", "unban", "BANNED|INACTIVE")])
def test_stop_continue_ban_unban_seen_by_every_node(sb: Sandbox, on: str, off: str,
                                                    word: str) -> None:
    agreed(sb, [0, 1, 2], ALL_OK)
    sb.ctdb(0, "-n", "1", *on.split())
    expect = dict(ALL_OK)
    expect[1] = word
    vs = agreed(sb, [0, 1, 2], expect)
    assert all(1 not in v["vnnmap"] for v in vs.values())
    sb.ctdb(0, "-n", "1", *off.split())
    agreed(sb, [0, 1, 2], ALL_OK)


def test_frozen_leader_is_fenced_after_thaw(sb: Sandbox) -> None:
    vs = agreed(sb, [0, 1, 2], ALL_OK)
    leader = vs[0]["leader"]
    others = [p for p in (0, 1, 2) if p != leader]
    old_term = vs[0]["term"]
    sb.freeze(leader)
    try:
        expect = dict(ALL_OK)
        expect[leader] = "DISCONNECTED|INACTIVE"
        vs = agreed(sb, others, expect)
        assert vs[others[0]]["term"] > old_term
        new_leader = vs[others[0]]["leader"]
    finally:
        sb.thaw(leader)
    vs = agreed(sb, [0, 1, 2], ALL_OK)
    assert {v["leader"] for v in vs.values()} == {new_leader}, "the ex-leader follows"
    assert f"node {leader} steps down" in sb.log_text(leader) or "leader is node" in \
        sb.log_text(leader)


def test_tunables_and_capabilities(sb: Sandbox) -> None:
    listing = sb.ctdb(0, "listvars").stdout
    assert "KeepaliveInterval       = 5" in listing
    assert "HeartbeatIntervalMs     = 100" in listing
    assert sb.ctdb(0, "getvar", "MonitorInterval").stdout == "MonitorInterval         = 15\n"
    sb.ctdb(0, "setvar", "MonitorInterval", "20")
    assert sb.ctdb(0, "getvar", "monitorinterval").stdout.endswith("= 20\n")
    bad = sb.ctdb(0, "getvar", "NoSuchTunable", check=False)
    assert bad.returncode == 1
    assert "NoSuchTunable" in bad.stderr
    assert sb.ctdb(1, "getcapabilities").stdout == "LEADER: YES\nLMASTER: YES\n"


REPORT = """
import sys
from pathlib import Path
from ctdb.clusterd.messages import HealthReport
from ctdb.config import load
from ctdb.protocol import NODE_CURRENT, Address, Service
from ctdb.transport.sync import SyncClient
with SyncClient(load().conf.run_dir) as c:
    c.request(Address(NODE_CURRENT, Service.CLUSTERD),
              HealthReport("monitor", sys.argv[1] == "ok", "10.test failed"))
"""


def test_health_reports_make_a_node_unhealthy_everywhere(sb: Sandbox) -> None:
    import sys

    agreed(sb, [0, 1, 2], ALL_OK)
    sb.exec(1, [sys.executable, "-c", REPORT, "bad"], check=True)
    expect = dict(ALL_OK)
    expect[1] = "UNHEALTHY"
    agreed(sb, [0, 1, 2], expect)
    assert "UNHEALTHY (monitor: 10.test failed)" in sb.log_text(1)
    sb.exec(1, [sys.executable, "-c", REPORT, "ok"], check=True)
    agreed(sb, [0, 1, 2], ALL_OK)


def test_reloadnodes_adds_a_fourth_node_live(sb: Sandbox) -> None:
    agreed(sb, [0, 1, 2], ALL_OK)
    generation = views(sb, [0])[0]["generation"]
    new = sb.add_node()
    assert new == 3
    sb.ctdb(0, "reloadnodes")
    expect = {0: "OK", 1: "OK", 2: "OK", 3: "OK"}
    vs = agreed(sb, [0, 1, 2, 3], expect)
    assert vs[0]["generation"] != generation
    assert sb.ctdb(3, "-n", "all", "ping").stdout.count("response from") == 4


def test_reloadnodes_deletes_a_node_and_adds_it_back(sb: Sandbox) -> None:
    """After the test above: node 3 deleted (its line commented out), then back."""
    agreed(sb, [0, 1, 2, 3], {0: "OK", 1: "OK", 2: "OK", 3: "OK"})
    files = [sb.topo.node(p).base / "nodes" for p in range(4)]
    original = files[0].read_text()
    address = original.splitlines()[3]
    try:
        sb.stop(3)
        for f in files:
            f.write_text(original.replace(address, f"#{address}"))
        sb.ctdb(0, "reloadnodes")
        wait_for("node 3 gone from the status", lambda: all(
            "pnn:3 " not in sb.ctdb(p, "status").stdout for p in (0, 1, 2)))
        for f in files:
            f.write_text(original)
        sb.start(3)
        sb.wait_ready(3)
        sb.ctdb(0, "reloadnodes")
        agreed(sb, [0, 1, 2, 3], {0: "OK", 1: "OK", 2: "OK", 3: "OK"})
    finally:
        for f in files:
            f.write_text(original)
