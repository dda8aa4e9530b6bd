"""Three real ``ctdbd`` nodes, each in its own network namespace on one bridge.

What an admin sees: ``ctdb`` answers from every node, a crashed daemon comes back,
a cut link heals by itself, and the daemon shuts down cleanly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctdb.sandbox.lab import BIN, Options, Sandbox, wait_for


@pytest.fixture(scope="module")
def cluster() -> Iterator[Sandbox]:
    with Sandbox(Options(name=f"r{os.getpid() % 100000}", nodes=3)) as sb:
        yield sb


def test_ping_all_nodes_answer(cluster: Sandbox) -> None:
    out = cluster.ctdb(0, "-n", "all", "ping").stdout.splitlines()
    assert [line.split()[2] for line in out] == ["0", "1", "2"]
    assert all(line.startswith("response from ") and " sec  (" in line for line in out)


def test_uptime_of_another_node(cluster: Sandbox) -> None:
    out = cluster.ctdb(0, "-n", "2", "uptime").stdout
    assert out.startswith("Current time of node 2 ")
    assert "Ctdbd start time              : (000 " in out
    assert "Duration of last recovery/failover:" in out


def test_pnn_and_status(cluster: Sandbox) -> None:
    assert cluster.ctdb(1, "pnn").stdout == "1\n"
    wait_for("all links up", lambda: "DISCONNECTED" not in cluster.ctdb(0, "status").stdout)
    out = cluster.ctdb(0, "status").stdout.splitlines()
    assert out[0] == "Number of nodes:3"
    ip = [n.private_ip for n in cluster.topo.nodes]
    assert out[1] == f"pnn:0 {ip[0]:<16} OK (THIS NODE)"
    assert out[2] == f"pnn:1 {ip[1]:<16} OK"
    machine = cluster.ctdb(2, "-X", "status").stdout.splitlines()
    assert machine[0] == ("|Node|IP|Disconnected|Unknown|Banned|Disabled|Unhealthy|Stopped"
                          "|Inactive|PartiallyOnline|ThisNode|")
    assert machine[3] == f"|2|{ip[2]}|0|0|0|0|0|0|0|0|Y|"


def test_json_output(cluster: Sandbox) -> None:
    import json

    doc = json.loads(cluster.ctdb(0, "--json", "-n", "all", "ping").stdout)
    assert [p["pnn"] for p in doc["ping"]] == [0, 1, 2]
    assert all(p["ok"] for p in doc["ping"])


def test_killed_daemon_is_restarted(cluster: Sandbox) -> None:
    before = cluster.children(1)
    assert "ctdb-transport" in before
    os.kill(before["ctdb-transport"], signal.SIGKILL)
    after = wait_for("a new ctdb-transport on node 1", lambda: (
        c if (c := cluster.children(1)).get("ctdb-transport") not in (None,
              before["ctdb-transport"]) else None))
    assert after["ctdb-transport"] != before["ctdb-transport"]
    wait_for("node 1 answers node 0 again",
             lambda: cluster.ctdb(0, "-n", "1", "ping", check=False).returncode == 0)
    log = cluster.log_text(1)
    assert "ctdb-transport killed by signal 9 (SIGKILL); restarting" in log

    # Each daemon reconnects exactly once: node 1's transport has one local client per
    # daemon again (masterd and every child but the transport itself).
    def clients() -> int:
        out = cluster.ctdb(0, "-n", "1", "ping").stdout
        return int(out.split("(")[1].split()[0])

    daemons = len(cluster.children(1))
    wait_for("the daemons back on node 1's transport", lambda: clients() == daemons)
    assert [clients() for _ in range(5)] == [daemons] * 5


def test_cut_link_heals_by_itself(cluster: Sandbox) -> None:
    cluster.cut(2, "private")
    try:
        ip2 = cluster.topo.node(2).private_ip
        wait_for("node 0 to see node 2 disconnected", lambda: f"pnn:2 {ip2:<16} "
                 "DISCONNECTED|INACTIVE" in cluster.ctdb(0, "status").stdout)
        failed = cluster.ctdb(0, "-n", "2", "ping", check=False)
        assert failed.returncode == 1
        assert failed.stderr.strip() == "Node 2 is DISCONNECTED"
    finally:
        cluster.heal(2)
    wait_for("node 2 to answer node 0 again",
             lambda: cluster.ctdb(0, "-n", "2", "ping", check=False).returncode == 0)


def test_malformed_local_message_does_not_hurt(cluster: Sandbox) -> None:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    raw.connect(str(cluster.topo.node(0).run_dir / "transport.sock"))
    raw.send(b"\x00 definitely not a frame")
    raw.send(b"PCTD\x01" + b"\xff" * 80)
    wait_for("the complaint in the log", lambda: "malformed" in cluster.log_text(0))
    raw.close()
    cluster.ctdb(0, "ping")


def test_cli_without_daemon_and_bad_usage(tmp_path: Path) -> None:
    base = tmp_path / "etc"
    base.mkdir()
    (base / "nodes").write_text("198.18.1.1\n")
    (base / "ctdb.conf").write_text(f"[paths]\n  run directory = {tmp_path / 'run'}\n")
    env = dict(os.environ, CTDB_BASE=str(base))
    r = subprocess.run([str(BIN / "ctdb"), "ping"], env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("Failed to connect to CTDB daemon (")
    r = subprocess.run([str(BIN / "ctdb"), "--bogus", "ping"], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert "Usage: ctdb" in r.stderr
    r = subprocess.run([str(BIN / "ctdb")], env=env, capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run([str(BIN / "ctdb"), "frobnicate"], env=env, capture_output=True,
                       text=True)
    assert (r.returncode, r.stderr) == (2, "Unknown command 'frobnicate'\n")


def test_single_process_node_and_sd_notify(tmp_path: Path) -> None:
    sb = Sandbox(Options(name=f"s{os.getpid() % 100000}", nodes=1))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    try:
        sb.up()
        sb.stop(0)
        sb.start(0, "--single-process",
                 env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"})
        messages: list[str] = []
        while not any("READY=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        # No daemon children; only the nftables gate's nft (failoverd.gate).
        assert set(sb.children(0)) == {"nft"}, "single-process mode starts no daemons"
        sb.ctdb(0, "ping")
        while not any("WATCHDOG=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        sb.stop(0)
        while not any("STOPPING=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
    finally:
        notify.close()
        sb.down()


def test_a_hung_daemon_is_killed_when_the_node_stops(cluster: Sandbox) -> None:
    """A daemon that ignores SIGTERM (here: stopped) does not keep the node up."""
    hung = cluster.children(2)["ctdb-clusterd"]
    os.kill(hung, signal.SIGSTOP)
    try:
        cluster.stop(2, timeout=20)  # fails unless ctdbd exits
        assert "ctdb-clusterd did not stop within 5s; killing it" in cluster.log_text(2)
        assert not Path(f"/proc/{hung}").exists() or \
            Path(f"/proc/{hung}/stat").read_text().split(") ", 1)[1][0] == "Z"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)
        cluster.start(2)
        cluster.wait_ready(2)
