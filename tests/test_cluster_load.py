"""A busy cluster is not a dead one: no false DISCONNECTED with the cores saturated.

The short CI version of the benchmark's ten-minute run: both cores busy with one busy
loop each, 4 MiB messages crossing the cluster all the while, for 15 seconds.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from ctdb.protocol import Address, EchoReply, EchoRequest, Message
from ctdb.sandbox.lab import Options, Sandbox
from ctdb.transport.client import Client
from tests.test_cluster import ALL_OK, agreed

ECHO = 0x9002
SECONDS = 15.0


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(Options(name=f"b{os.getpid() % 100000}", nodes=3)) as sandbox:
        yield sandbox


async def traffic(sb: Sandbox, seconds: float) -> int:
    """4 MiB echo round trips from node 0 to node 2 until the time is up."""
    holder: list[Client] = []

    def on_message(msg: Message) -> None:
        if isinstance(msg.body, EchoRequest):
            holder[0].reply(msg, EchoReply(msg.body.data))

    echo = await Client.connect(sb.topo.node(2).run_dir, ECHO, on_message=on_message)
    holder.append(echo)
    sender = await Client.connect(sb.topo.node(0).run_dir)
    payload = os.urandom(4 * 1024 * 1024)
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply = await sender.request(Address(2, ECHO), EchoRequest(payload), timeout=30)
        assert reply.data == payload
        done += 1
    await sender.close()
    await echo.close()
    return done


def test_saturated_cores_and_bulk_traffic_cause_no_false_disconnect(sb: Sandbox) -> None:
    agreed(sb, [0, 1, 2], ALL_OK)
    marks = {n.pnn: len(sb.log_text(n.pnn)) for n in sb.topo.nodes}
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)]
    try:
        transfers = asyncio.run(traffic(sb, SECONDS))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert transfers >= 3, "the bulk traffic must actually have flowed"
    for n in sb.topo.nodes:
        new = sb.log_text(n.pnn)[marks[n.pnn]:]
        assert "is DISCONNECTED" not in new, f"node {n.pnn} saw a false disconnect:\n{new}"
        assert "link lost" not in new, f"node {n.pnn} lost a link under load:\n{new}"
    agreed(sb, [0, 1, 2], ALL_OK)


def test_five_percent_loss_causes_no_false_disconnect(sb: Sandbox) -> None:
    agreed(sb, [0, 1, 2], ALL_OK)
    marks = {n.pnn: len(sb.log_text(n.pnn)) for n in sb.topo.nodes}
    try:
        for n in sb.topo.nodes:
            sb.loss(n.pnn, 5)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:  # the cluster keeps answering all along
            sb.ctdb(0, "-n", "all", "ping", check=False, timeout=10)
    finally:
        for n in sb.topo.nodes:
            sb.loss(n.pnn, 0)
    for n in sb.topo.nodes:
        new = sb.log_text(n.pnn)[marks[n.pnn]:]
        assert "is DISCONNECTED" not in new, f"node {n.pnn} saw a false disconnect:\n{new}"
    agreed(sb, [0, 1, 2], ALL_OK)
