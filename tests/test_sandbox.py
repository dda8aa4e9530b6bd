"""ctdb-sandbox: a cluster comes up, every fault does what it says, down leaves nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctdb.sandbox import network
from ctdb.sandbox.lab import Options, Sandbox, destroy, wait_for
from ctdb.sandbox.topology import STATE_ROOT, SandboxError, plan
from tests.leftovers import leftovers

NAME = f"t{os.getpid() % 100000}"
PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("open")
except ConnectionRefusedError:
    print("refused")  # the host answered
except OSError:
    print("silent")
"""


def reach(ns: str, address: str, port: int = 4379, timeout: float = 0.5) -> str:
    """'open' or 'refused' when *address* answers from namespace *ns*, else 'silent'."""
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PROBE, address,
                           str(port), str(timeout)], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    sandbox = Sandbox(Options(name=NAME, nodes=3, public_ips=2))
    try:
        sandbox.up()
        yield sandbox
    finally:
        sandbox.down()
        assert leftovers(NAME) == []


def test_nodes_answer_and_status(sb: Sandbox) -> None:
    out = sb.ctdb(0, "-n", "all", "ping").stdout
    assert out.count("response from") == 3
    status = sb.status()
    assert [n["state"] for n in status["nodes"]] == ["running"] * 3
    net = f"198.18.{2 * sb.topo.index + 2}"
    assert status["public_ips"] == [f"{net}.100", f"{net}.101"]


def test_cut_private_keeps_public(sb: Sandbox) -> None:
    n0, n2 = sb.topo.node(0), sb.topo.node(2)
    assert reach(n2.netns, n0.private_ip) == "open"
    sb.cut(2, "private")
    try:
        assert reach(n2.netns, n0.private_ip) == "silent"
        assert reach(sb.topo.client, n2.public_ip) == "refused"
    finally:
        sb.heal(2)
    assert reach(n2.netns, n0.private_ip) == "open"


def test_freeze_stops_every_process_and_thaw_resumes(sb: Sandbox) -> None:
    node = sb.topo.node(1)

    def states() -> set[str]:
        result = set()
        for pid in network.pids_in(node.netns):
            try:
                result.add(Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0])
            except (OSError, IndexError):
                continue
        return result

    sb.freeze(1)
    try:
        assert wait_for("all stopped", lambda: states() == {"T"}, 5)
        failed = sb.ctdb(0, "-n", "1", "ping", "-t", "1", check=False)
        assert failed.returncode == 1
    finally:
        sb.thaw(1)
    assert "T" not in states()
    wait_for("node 1 answers", lambda: sb.ctdb(0, "-n", "1", "ping", check=False).returncode == 0)


def test_partition_and_heal(sb: Sandbox) -> None:
    n0, n1, n2 = (sb.topo.node(i) for i in range(3))
    sb.partition([[0, 1], [2]])
    try:
        assert reach(n0.netns, n1.private_ip) == "open"
        assert reach(n0.netns, n2.private_ip) == "silent"
    finally:
        sb.heal()
    assert reach(n0.netns, n2.private_ip) == "open"


def test_loss_and_linkdown(sb: Sandbox) -> None:
    n0, n2 = sb.topo.node(0), sb.topo.node(2)
    sb.loss(2, 100)
    try:
        assert reach(n2.netns, n0.private_ip) == "silent"
    finally:
        sb.loss(2, 0)
    assert reach(n2.netns, n0.private_ip) == "open"
    sb.linkdown(2, "eth0")
    try:
        assert reach(n2.netns, n0.private_ip, timeout=0.3) == "silent"
    finally:
        sb.linkup(2, "eth0")
    wait_for("link back", lambda: reach(n2.netns, n0.private_ip) == "open", 10)


def test_kill_one_daemon_and_restart(sb: Sandbox) -> None:
    before = sb.children(2)["ctdb-transport"]
    sb.kill(2, "transport")
    wait_for("a new transport", lambda: sb.children(2).get("ctdb-transport") not in
             (None, before))
    old = sb.pid(2)
    sb.restart(2)
    assert sb.pid(2) != old
    wait_for("node 0 reaches the restarted node 2",
             lambda: sb.ctdb(0, "-n", "2", "ping", check=False).returncode == 0)


def test_poweroff_leaves_no_process(sb: Sandbox) -> None:
    node = sb.topo.node(2)
    sb.poweroff(2)
    wait_for("every process gone", lambda: not network.pids_in(node.netns), 5)
    assert reach(sb.topo.client, node.public_ip, timeout=0.3) == "silent"
    sb.heal(2)
    sb.start(2)
    sb.wait_ready(2)


def test_up_refuses_bad_options() -> None:
    with pytest.raises(SandboxError, match="invalid sandbox name"):
        plan("Bad Name", 3)
    with pytest.raises(SandboxError, match="--nodes must be"):
        plan("ok", 0)
    with pytest.raises(SandboxError, match="not available yet"):
        Sandbox(Options(name="tbad", impl="keepalived")).up()
    assert leftovers("tbad") == []


def test_down_cleans_a_crashed_run() -> None:
    name = f"c{os.getpid() % 100000}"
    sandbox = Sandbox(Options(name=name, nodes=2))
    sandbox.up()
    # A crash: the state file is lost, processes and namespaces are left behind.
    (STATE_ROOT / name / "state.json").unlink()
    with pytest.raises(SandboxError, match="no sandbox named"):
        Sandbox.load(name)
    assert destroy(name)
    assert leftovers(name) == []


def test_probe_command_shows_which_node_serves_each_address(sb: Sandbox) -> None:
    out = subprocess.run([sys.executable, "-m", "ctdb.sandbox.cli", "probe", "--name", NAME,
                          "--seconds", "1.5"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    events = [json.loads(line) for line in out.splitlines()]
    hosts = {ln.split()[0]: int(ln.split()[1])
             for ln in sb.ctdb(0, "ip", "all").stdout.splitlines()[1:]}
    last = {e["ip"]: e["node"] for e in events}  # where each address ended up
    assert last == {ip: f"node{pnn}" for ip, pnn in hosts.items()}


def test_probe_sees_a_graceful_move(sb: Sandbox) -> None:
    from ctdb.sandbox.probe import Probe, start_echo

    start_echo(sb)
    ip = sb.topo.public_ips[0]
    holder = wait_for(f"{ip} hosted", lambda: next(
        (int(ln.split()[1]) + 1 for ln in sb.ctdb(0, "ip", "all").stdout.splitlines()[1:]
         if ln.split()[0] == ip and ln.split()[1] != "-1"), None)) - 1
    with Probe(sb, [ip], interval=0.005) as probe:
        wait_for("the probe's first answer", lambda: probe.events)
        sb.ctdb(holder, "disable")
        wait_for(f"{ip} on another node", lambda: f"{ip} {holder}\n" not in
                 sb.ctdb(0, "ip", "all").stdout and " -1\n" not in sb.ctdb(0, "ip", "all").stdout)
    sb.ctdb(holder, "enable")
    served = [e["node"] for e in probe.events if e["node"]]
    assert served[0] == f"node{holder}"
    assert served[-1] not in (f"node{holder}", None)
    for _down, _back, old, new in probe.outages(ip):
        assert old == f"node{holder}"
        assert new != old
