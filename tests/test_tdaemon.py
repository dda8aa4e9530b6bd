"""tdaemon: a daemon is a class with handlers; the framework does the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ctdb.errors import RemoteError
from ctdb.protocol import (
    NODE_CURRENT,
    Ack,
    Address,
    EchoReply,
    EchoRequest,
    ErrorCode,
    Flag,
    GetLogLevelRequest,
    LogLevelReply,
    Message,
    PingReply,
    PingRequest,
    SetLogLevelRequest,
    ShutdownRequest,
    StatusReply,
    StatusRequest,
    UptimeRequest,
    VersionReply,
    VersionRequest,
    encode,
)
from ctdb.tdaemon import Daemon, handles, periodic
from ctdb.transport.client import Client
from tests.transport_lab import Nodes

SERVICE = 0x9100
ADDR = Address(NODE_CURRENT, SERVICE)


class Sample(Daemon):
    name = "sample"
    service = SERVICE
    tick_interval = 0.01

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.ticks = 0

    @handles(EchoRequest)
    async def echo(self, msg: Message) -> EchoReply:
        if msg.body.data == b"boom":
            raise ValueError("asked to fail")
        await asyncio.sleep(0)
        return EchoReply(msg.body.data)

    @periodic("tick_interval")
    async def tick(self) -> None:
        self.ticks += 1


@pytest.fixture
async def sample(nodes: Nodes) -> AsyncIterator[tuple[Sample, Client]]:
    await nodes.start(0)
    daemon = Sample(nodes.run_dir(0))
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.run(ready.set))
    async with asyncio.timeout(5):
        await ready.wait()
    client = await Client.connect(nodes.run_dir(0))
    yield daemon, client
    await client.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_handler_reply_and_common_controls(sample: tuple[Sample, Client]) -> None:
    daemon, client = sample
    assert (await client.request(ADDR, EchoRequest(b"hi"))).data == b"hi"
    assert isinstance(await client.request(ADDR, PingRequest()), PingReply)
    version = await client.request(ADDR, VersionRequest())
    assert isinstance(version, VersionReply)
    assert version.protocol_min <= version.protocol_max
    status = await client.request(ADDR, StatusRequest())
    assert isinstance(status, StatusReply)
    assert (status.name, status.state) == ("sample", "RUNNING")
    uptime = await client.request(ADDR, UptimeRequest())
    assert uptime.start_time_us <= uptime.current_time_us
    assert (await client.request(ADDR, SetLogLevelRequest("debug"))).level == "DEBUG"
    reply = await client.request(ADDR, GetLogLevelRequest())
    assert isinstance(reply, LogLevelReply)
    assert reply.level == "DEBUG"
    logging.getLogger().setLevel(logging.WARNING)
    async with asyncio.timeout(5):
        while daemon.ticks < 3:  # noqa: ASYNC110 - the periodic task is the thing tested
            await asyncio.sleep(0.01)


async def test_failing_handler_answers_with_error_and_keeps_serving(
        sample: tuple[Sample, Client]) -> None:
    _, client = sample
    with pytest.raises(RemoteError) as err:
        await client.request(ADDR, EchoRequest(b"boom"))
    assert err.value.code == ErrorCode.INTERNAL
    assert "asked to fail" in str(err.value)
    assert (await client.request(ADDR, EchoRequest(b"ok"))).data == b"ok"


async def test_unknown_and_malformed_requests_are_refused(
        sample: tuple[Sample, Client], caplog: pytest.LogCaptureFixture) -> None:
    _, client = sample
    with pytest.raises(RemoteError) as err:
        await client.request(ADDR, Ack())
    assert err.value.code == ErrorCode.UNKNOWN_MESSAGE
    # A frame with a valid header whose payload is cut short.
    frame = bytearray(encode(Message(body=EchoRequest(b"x" * 50), dst=ADDR, request_id=77,
                                     flags=Flag.REQUEST)))
    broken = bytes(frame[:-10])
    broken = broken[:8] + len(broken).to_bytes(4, "big") + broken[12:]
    rid_reply: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
    client._pending[77] = rid_reply
    assert client._conn is not None
    caplog.set_level(logging.WARNING)
    client._conn.send(broken)
    async with asyncio.timeout(5):
        reply = await rid_reply
    assert reply.body.code == ErrorCode.INVALID_MESSAGE
    assert "malformed" in caplog.text
    assert (await client.request(ADDR, EchoRequest(b"still here"))).data == b"still here"


async def test_shutdown_request_stops_the_daemon(nodes: Nodes) -> None:
    await nodes.start(0)
    daemon = Sample(nodes.run_dir(0))
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.run(ready.set))
    async with asyncio.timeout(5):
        await ready.wait()
    client = await Client.connect(nodes.run_dir(0))
    assert isinstance(await client.request(ADDR, ShutdownRequest()), Ack)
    async with asyncio.timeout(5):
        await task
    assert daemon.state == "SHUTDOWN"
    await client.close()
