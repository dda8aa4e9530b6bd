"""transportd on real sockets: local seqpacket clients and authenticated TCP links.

The nodes run in this process, in a network namespace the test creates, on
198.18.0.0/15 addresses; a man-in-the-middle proxy injects forged and replayed frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ctdb.errors import RemoteError
from ctdb.protocol import (
    HEADER_SIZE,
    NODE_ALL,
    NODE_CURRENT,
    Address,
    EchoReply,
    EchoRequest,
    ErrorCode,
    ErrorReply,
    Flag,
    Message,
    PingReply,
    PingRequest,
    Service,
    StatusReply,
    StatusRequest,
    decode,
    encode,
)
from ctdb.transport.auth import MAC_SIZE, AcceptorHandshake, DialerHandshake, Session
from ctdb.transport.client import Client
from ctdb.transport.core import socket_path
from ctdb.transport.daemon import Transportd, TransportSettings, _Local
from ctdb.transport.link import LinkStream, PeerLink, read_handshake
from tests.transport_lab import ADDRS, ECHO, ECHO_TYPE, KEY, OTHER_KEY, PORT, PROXY, Nodes


async def echo_service(run_dir: Path, service: int = ECHO) -> tuple[Client, list[Message]]:
    seen: list[Message] = []
    holder: list[Client] = []

    def on_message(msg: Message) -> None:
        seen.append(msg)
        if isinstance(msg.body, EchoRequest):
            holder[0].reply(msg, EchoReply(msg.body.data))

    client = await Client.connect(run_dir, service, on_message=on_message)
    holder.append(client)
    return client, seen


async def until(what: str, cond: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll *cond* (state outside this loop: sockets, logs) until true, or fail at the deadline."""
    try:
        async with asyncio.timeout(timeout):
            while not await cond():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def can_ping(client: Client, pnn: int) -> bool:
    try:
        await client.request(Address(pnn, Service.TRANSPORT), PingRequest(), timeout=0.5)
    except (RemoteError, TimeoutError):
        return False
    return True


async def test_local_request_and_remote_request(nodes: Nodes) -> None:
    for pnn in range(3):
        await nodes.start(pnn)
    client = await Client.connect(nodes.run_dir(0))
    assert client.address.node == 0
    reply = await client.request(Address(NODE_CURRENT, Service.TRANSPORT), PingRequest())
    assert isinstance(reply, PingReply)
    assert reply.clients == 1
    await until("links up", lambda: can_ping(client, 2))
    status = await client.request(Address(2, Service.TRANSPORT), StatusRequest())
    assert isinstance(status, StatusReply)
    assert {kv.key: kv.value for kv in status.items}["pnn"] == "2"
    await client.close()


async def test_missing_service_and_disconnected_node_fail_fast(nodes: Nodes) -> None:
    await nodes.start(0)
    client = await Client.connect(nodes.run_dir(0))
    with pytest.raises(RemoteError) as err:
        await client.request(Address(0, ECHO), EchoRequest(b"x"), timeout=5)
    assert err.value.code == ErrorCode.NO_SUCH_SERVICE
    with pytest.raises(RemoteError) as err:
        await client.request(Address(1, ECHO), EchoRequest(b"x"), timeout=5)
    assert err.value.code == ErrorCode.NODE_DISCONNECTED
    await client.close()


async def test_broadcast_reaches_subscribers_on_every_node(nodes: Nodes) -> None:
    for pnn in range(3):
        await nodes.start(pnn)
    got: dict[int, list[Message]] = {0: [], 1: [], 2: []}
    subs = [await Client.connect(nodes.run_dir(p), subscriptions=[ECHO_TYPE],
                                 on_message=got[p].append) for p in range(3)]
    sender = await Client.connect(nodes.run_dir(1))
    await until("links up", lambda: can_ping(sender, 0))
    await until("links up", lambda: can_ping(sender, 2))
    sender.publish(EchoRequest(b"hello"), NODE_ALL)
    await until("all got it", _all_got(got))
    assert all(m[0].src.node == 1 for m in got.values())
    for c in [*subs, sender]:
        await c.close()


async def test_large_broadcast_arrives_whole(nodes: Nodes) -> None:
    for pnn in range(2):
        await nodes.start(pnn)
    got: list[Message] = []
    sub = await Client.connect(nodes.run_dir(1), subscriptions=[ECHO_TYPE],
                               on_message=got.append)
    sender = await Client.connect(nodes.run_dir(0))
    await until("link up", lambda: can_ping(sender, 1))
    blob = os.urandom(300_000)  # several fragments
    sender.publish(EchoRequest(blob), NODE_ALL)
    await until("delivered", lambda: _true(bool(got)))
    assert got[0].body.data == blob
    await sub.close()
    await sender.close()


def _all_got(got: dict[int, list[Message]]):
    async def check() -> bool:
        return all(got.values())

    return check


async def test_subscriptions_survive_transportd_restart(nodes: Nodes) -> None:
    await nodes.start(0)
    await nodes.start(1)
    got: list[Message] = []
    sub = await Client.connect(nodes.run_dir(0), subscriptions=[ECHO_TYPE],
                               on_message=got.append)
    sender = await Client.connect(nodes.run_dir(1))
    await nodes.stop(0)
    await until("client notices", lambda: _false(sub.connected))
    await nodes.start(0)
    await sub.wait_connected(5)
    await until("links up", lambda: can_ping(sender, 0))
    sender.publish(EchoRequest(b"after restart"), NODE_ALL)
    await until("delivered", lambda: _true(bool(got)))
    assert got[0].body == EchoRequest(b"after restart")
    await sub.close()
    await sender.close()


async def _true(value: bool) -> bool:
    return value


async def _false(value: bool) -> bool:
    return not value


async def test_16_mib_message_crosses_while_pings_answer(nodes: Nodes) -> None:
    for pnn in range(2):
        await nodes.start(pnn)
    echo, _ = await echo_service(nodes.run_dir(1))
    client = await Client.connect(nodes.run_dir(0))
    pinger = await Client.connect(nodes.run_dir(0))
    await until("link up", lambda: can_ping(client, 1))
    payload = os.urandom(16 * 1024 * 1024)
    transfer = asyncio.create_task(
        client.request(Address(1, ECHO), EchoRequest(payload), timeout=60))
    answered = 0
    while not transfer.done():
        await pinger.request(Address(1, Service.TRANSPORT), PingRequest(), timeout=5)
        answered += 1
    reply = await transfer
    assert reply.data == payload
    assert answered >= 3, "pings should interleave with the 16 MiB transfer"
    for c in (echo, client, pinger):
        await c.close()


async def test_malformed_local_message_is_logged_and_ignored(
        nodes: Nodes, caplog: pytest.LogCaptureFixture) -> None:
    await nodes.start(0)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    raw.connect(str(socket_path(nodes.run_dir(0))))
    caplog.set_level(logging.WARNING)
    for junk in (b"", b"garbage", b"PCTD" + b"\xff" * 60, os.urandom(200)):
        if junk:
            raw.send(junk)
    client = await Client.connect(nodes.run_dir(0))
    await until("logged", lambda: _true("malformed" in caplog.text))
    assert isinstance(await client.request(Address(0, Service.TRANSPORT), PingRequest()),
                      PingReply)
    raw.close()
    await client.close()


# -- authentication ----------------------------------------------------------------
class Proxy:
    """A TCP man in the middle between node 0 (dialer) and node 1 (acceptor).

    It forwards bytes both ways, records the frames node 0 sends after the handshake
    and can inject raw bytes towards node 1.
    """

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.to_acceptor: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None
        self.silent = False  # drop everything, as a silent partition does
        self.swallowed = 0  # handshakes dropped while silent

    def silence(self) -> None:
        self.silent = True

    def unsilence(self) -> None:
        self.silent = False

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, PROXY, PORT)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(ADDRS[1], PORT,
                                                             local_addr=(ADDRS[0], 0))
        self.to_acceptor = up_writer

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    if not self.silent:
                        dst.write(data)
                        await dst.drain()
            dst.close()

        async def dialer_side() -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                size = await reader.readexactly(2)
                hello = await reader.readexactly(int.from_bytes(size, "big"))
                if self.silent:
                    self.swallowed += 1
                    await asyncio.Event().wait()  # swallow the handshake: it times out
                up_writer.write(size + hello)
                up_writer.write(await reader.readexactly(32))  # the dialer's proof
                while True:
                    header = await reader.readexactly(HEADER_SIZE)
                    length = int.from_bytes(header[8:12], "big")
                    rest = await reader.readexactly(length - HEADER_SIZE + MAC_SIZE)
                    self.frames.append(header + rest)
                    if not self.silent:
                        up_writer.write(header + rest)
                        await up_writer.drain()
            up_writer.close()

        await asyncio.gather(dialer_side(), pump(up_reader, writer))

    def close(self) -> None:
        if self.server:
            self.server.close()


async def test_forged_and_replayed_frames_are_dropped(
        nodes: Nodes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    proxy = Proxy()
    await proxy.start()
    await nodes.start(0, {0: ADDRS[0], 1: PROXY})
    await nodes.start(1, {0: ADDRS[0], 1: ADDRS[1]})
    echo, seen = await echo_service(nodes.run_dir(1))
    client = await Client.connect(nodes.run_dir(0))
    await until("link up", lambda: can_ping(client, 1))
    await client.request(Address(1, ECHO), EchoRequest(b"genuine"))
    assert len(seen) == 1
    recorded = next(f for f in proxy.frames if b"genuine" in f)
    assert proxy.to_acceptor is not None
    proxy.to_acceptor.write(recorded)  # replay
    forged = bytearray(recorded)
    forged[-MAC_SIZE - 1] ^= 0xFF      # tamper with the payload, keep the old MAC
    proxy.to_acceptor.write(bytes(forged))
    forged_mac = recorded[:-MAC_SIZE] + os.urandom(MAC_SIZE)
    proxy.to_acceptor.write(forged_mac)
    await until("drops logged", lambda: _true(caplog.text.count("failed authentication") >= 3))
    assert len(seen) == 1, "no forged or replayed frame may be delivered"
    assert nodes.daemons[1].links[0].dropped_frames == 3
    # The link survives and keeps carrying genuine traffic.
    assert (await client.request(Address(1, ECHO), EchoRequest(b"again"))).data == b"again"
    assert len(seen) == 2
    proxy.close()
    for c in (echo, client):
        await c.close()


async def test_wrong_key_never_delivers(nodes: Nodes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    await nodes.start(0)
    await nodes.start(1, keys=OTHER_KEY)
    echo, seen = await echo_service(nodes.run_dir(0))
    rogue = await Client.connect(nodes.run_dir(1))
    await until("refusal logged", lambda: _true("refused" in caplog.text))
    with pytest.raises(RemoteError) as err:
        await rogue.request(Address(0, ECHO), EchoRequest(b"let me in"), timeout=2)
    assert err.value.code == ErrorCode.NODE_DISCONNECTED
    assert seen == []
    assert not nodes.daemons[0].links[1].connected
    for c in (echo, rogue):
        await c.close()


async def test_key_rotation_two_valid_keys(nodes: Nodes) -> None:
    await nodes.start(0, keys=[OTHER_KEY[0], KEY[0]])  # new key preferred, old accepted
    await nodes.start(1, keys=KEY)
    client = await Client.connect(nodes.run_dir(0))
    await until("link up with the old key", lambda: can_ping(client, 1))
    await client.close()


async def test_address_not_in_nodes_file_is_refused(
        nodes: Nodes, caplog: pytest.LogCaptureFixture) -> None:
    from ctdb.transport.auth import AuthError, DialerHandshake
    from ctdb.transport.link import read_handshake

    caplog.set_level(logging.WARNING)
    await nodes.start(1)
    # Right key, claims to be node 0, but connects from an address outside the nodes file.
    reader, writer = await asyncio.open_connection(ADDRS[1], PORT, local_addr=(ADDRS[4], 0))
    hs = DialerHandshake(KEY, 0, (1, 1))
    writer.write(hs.first_message())
    with pytest.raises((asyncio.IncompleteReadError, AuthError, ConnectionError)):
        await read_handshake(reader)
    writer.close()
    await until("logged", lambda: _true(f"refused connection from {ADDRS[4]}" in caplog.text))
    assert not nodes.daemons[1].links[0].connected


async def test_links_come_back_after_repeated_silent_cuts(
        nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A link that dies by keepalive timeout is dialed again, every time (regression:
    Python 3.11.2's TaskGroup left the dialer unable to time out, so it stopped)."""
    from ctdb.transport import link

    monkeypatch.setattr(link, "HANDSHAKE_TIMEOUT", 0.3)
    proxy = Proxy()
    await proxy.start()
    await nodes.start(0, {0: ADDRS[0], 1: PROXY})
    await nodes.start(1, {0: ADDRS[0], 1: ADDRS[1]})
    client = await Client.connect(nodes.run_dir(0))
    for _ in range(3):
        await until("link up", lambda: can_ping(client, 1))
        proxy.silence()
        await until("link down", lambda: _false(nodes.daemons[0].links[1].connected))
        # A second swallowed handshake means the first one timed out in the dialer.
        goal = proxy.swallowed + 2
        await until("a handshake timed out",
                    lambda goal=goal: _true(proxy.swallowed >= goal))  # type: ignore[misc]
        proxy.unsilence()
    await until("link up at last", lambda: can_ping(client, 1))
    proxy.close()
    await client.close()


# -- the link's stream, write batching and the routing fast path, without sockets ----
class FakeTransport(asyncio.Transport):
    """Records writes; never pushes back by itself (tests call pause/resume_writing)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def _sessions() -> tuple[Session, Session]:
    """A dialer's and an acceptor's session of one handshake."""
    dialer = DialerHandshake(KEY, 0, (1, 1))
    acceptor = AcceptorHandshake(KEY, 1, (1, 1))
    _, reply = acceptor.on_hello(dialer.first_message()[2:])
    proof, dsession = dialer.on_reply(reply[2:], expected_pnn=1)
    return dsession, acceptor.on_proof(proof)


class LinkBench:
    """Node 1's end of a link to node 0, on a FakeTransport; node 0 is simulated."""

    def __init__(self, interval: float = 10.0, limit: int = 5) -> None:
        self.peer, mine = _sessions()  # the peer (node 0) dialed
        self.got: list[bytes] = []
        self.link = PeerLink(0, 1, on_frame=lambda _link, frame: self.got.append(frame),
                             on_state=lambda _link, _up: None,
                             keepalive_interval=interval, keepalive_limit=limit)
        self.stream = LinkStream()
        self.transport = FakeTransport()
        self.stream.connection_made(self.transport)
        self.task = asyncio.create_task(self.link.run_connection(self.stream, mine))

    def feed(self, data: bytes, chunk: int | None = None) -> None:
        chunk = chunk or len(data)
        for at in range(0, len(data), chunk):
            piece = data[at : at + chunk]
            view = self.stream.get_buffer(-1)
            assert len(view) >= len(piece)
            view[: len(piece)] = piece
            self.stream.buffer_updated(len(piece))

    def signed(self, *frames: bytes) -> bytes:
        return b"".join(f + self.peer.signer.sign(f) for f in frames)

    def sent(self) -> list[bytes]:
        """The frames node 1 wrote, each checked against its MAC in order."""
        wire = b"".join(self.transport.writes)
        frames = []
        while wire:
            length = int.from_bytes(wire[8:12], "big")
            frame, mac = wire[:length], wire[length : length + MAC_SIZE]
            assert self.peer.verifier.verify(frame, mac), "bad MAC or out of order"
            frames.append(frame)
            wire = wire[length + MAC_SIZE :]
        return frames

    async def close(self) -> None:
        self.link.close()
        await self.task


def _echo_frame(tag: int, size: int = 10, service: int = 5) -> bytes:
    return encode(Message(body=EchoRequest(bytes([tag]) * size), src=Address(0, service),
                          dst=Address(1, ECHO)))


@pytest.mark.parametrize("chunk", [1, 5, 47, 48, 64, 1000, None])
async def test_link_stream_frames_arrive_whole_however_the_bytes_are_cut(chunk: int | None,
                                                                         ) -> None:
    bench = LinkBench()
    await asyncio.sleep(0)
    frames = [_echo_frame(i, size=i * 37) for i in range(12)]
    frames.append(_echo_frame(99, size=65_000))  # a fragment-sized frame
    bench.feed(bench.signed(*frames), chunk)
    assert bench.got == frames
    assert bench.link.connected
    await bench.close()
    assert not bench.link.connected


async def test_link_stream_drops_forged_frames_and_keeps_going(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    bench = LinkBench()
    await asyncio.sleep(0)
    one, two = _echo_frame(1), _echo_frame(2)
    good = bench.signed(one)
    mac = bench.peer.signer.sign(two)
    forged = bytearray(two)
    forged[-1] ^= 1  # the MAC no longer matches
    bench.feed(good + bytes(forged) + mac + good)  # the last one is a replay
    assert bench.got == [one]
    assert bench.link.dropped_frames == 2
    bench.feed(two + mac)
    assert bench.got == [one, two]
    assert caplog.text.count("failed authentication") == 2
    await bench.close()


async def test_link_stream_out_of_sync_loses_the_link(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    bench = LinkBench()
    await asyncio.sleep(0)
    bench.feed(bench.signed(_echo_frame(1)) + b"XXXX" + bytes(60))
    await asyncio.wait_for(bench.task, 5)
    assert len(bench.got) == 1
    assert not bench.link.connected
    assert bench.transport.closed
    assert "link lost: stream out of sync (bad magic)" in caplog.text


async def test_link_writes_of_one_batch_leave_together() -> None:
    bench = LinkBench()
    await asyncio.sleep(0)
    frames = [_echo_frame(i) for i in range(5)]
    bench.link.batch.begin()
    for f in frames[:3]:
        assert bench.link.send(f, "a")
    assert bench.transport.writes == []  # held until the batch ends
    bench.link.batch.end()
    assert len(bench.transport.writes) == 1
    for f in frames[3:]:  # outside a batch: at once
        assert bench.link.send(f, "a")
    assert len(bench.transport.writes) == 3
    assert bench.sent() == frames
    await bench.close()
    assert not bench.link.send(frames[0], "a")


async def test_link_round_robin_by_source_once_the_socket_pushes_back() -> None:
    bench = LinkBench()
    await asyncio.sleep(0)
    bulk = [_echo_frame(i, service=7) for i in range(4)]
    ping = _echo_frame(100, service=8)
    bench.stream.pause_writing()
    for f in bulk:
        bench.link.send(f, "bulk")
    bench.link.send(ping, "ping")
    assert bench.transport.writes == []
    bench.stream.resume_writing()
    assert bench.sent() == [bulk[0], ping, *bulk[1:]]
    await bench.close()


async def test_link_keepalives_when_idle_and_gives_up_on_silence(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    bench = LinkBench(interval=0.05, limit=4)
    for _ in range(8):  # traffic from the peer keeps the link up
        await asyncio.sleep(0.05)
        bench.feed(bench.signed(_echo_frame(1)))
    assert bench.link.connected
    keepalives = bench.sent()
    assert len(keepalives) >= 3
    assert all(Message(body=decode(k).body).msg_type == 0x0003 for k in keepalives)
    await asyncio.wait_for(bench.task, 2)  # then silence: lost within the limit
    assert not bench.link.connected
    assert "link lost: no traffic within the keepalive limit" in caplog.text


async def test_handshake_reads_from_a_link_stream() -> None:
    stream = LinkStream()
    stream.connection_made(FakeTransport())
    reading = asyncio.create_task(read_handshake(stream))
    message = b"\x00\x05hello"
    for i in range(len(message)):
        view = stream.get_buffer(-1)
        view[:1] = message[i : i + 1]
        stream.buffer_updated(1)
        await asyncio.sleep(0)
    assert await reading == b"hello"
    late = asyncio.create_task(stream.readexactly(4))
    await asyncio.sleep(0)
    stream.eof_received()
    with pytest.raises(asyncio.IncompleteReadError):
        await late


async def test_frames_right_after_the_handshake_wait_for_the_session() -> None:
    stream = LinkStream()
    transport = FakeTransport()
    stream.connection_made(transport)
    peer, mine = _sessions()
    frames = [_echo_frame(i, size=3000) for i in range(6)]
    wire = b"\x00\x05hello" + b"".join(f + peer.signer.sign(f) for f in frames)
    fed = 0

    def feed() -> None:
        nonlocal fed
        while transport.reading and fed < len(wire):
            view = stream.get_buffer(-1)
            size = min(len(view), len(wire) - fed)
            view[:size] = wire[fed : fed + size]
            stream.buffer_updated(size)
            fed += size

    feed()
    assert not transport.reading, "an unauthenticated peer gets a small buffer only"
    assert await read_handshake(stream) == b"hello"
    got: list[bytes] = []
    link = PeerLink(0, 1, on_frame=lambda _link, frame: got.append(frame),
                    on_state=lambda _link, _up: None, keepalive_interval=10, keepalive_limit=5)
    task = asyncio.create_task(link.run_connection(stream, mine))
    await asyncio.sleep(0)
    assert transport.reading
    feed()
    assert got == frames
    link.close()
    await task


class FakeConn:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)


def _daemon_with_client(tmp_path: Path, service: int = 0x10001) -> tuple[Transportd, FakeConn]:
    daemon = Transportd(TransportSettings(0, {0: ADDRS[0], 1: ADDRS[1]}, tmp_path, KEY, PORT))
    conn = FakeConn()
    local = _Local(conn, service)  # type: ignore[arg-type]
    daemon._locals[conn] = local  # type: ignore[index]
    daemon._services[service] = local
    return daemon, conn


def _from_local(daemon: Transportd, conn: FakeConn, frame: bytes) -> None:
    daemon._local_frame(conn, memoryview(bytearray(frame)))  # type: ignore[arg-type]


async def test_ping_fast_path_answers_exactly_like_the_codec(tmp_path: Path) -> None:
    daemon, conn = _daemon_with_client(tmp_path)
    ping = encode(Message(body=PingRequest(), dst=Address(NODE_CURRENT, Service.TRANSPORT),
                          request_id=77, flags=Flag.REQUEST))
    _from_local(daemon, conn, ping)
    assert conn.sent == [encode(Message(body=PingReply(clients=1),
                                        src=Address(0, Service.TRANSPORT),
                                        dst=Address(0, 0x10001), request_id=77,
                                        flags=Flag.REPLY))]
    # Trailing bytes are tolerated, as the decoder tolerates them.
    longer = bytearray(ping + b"more")
    longer[8:12] = len(longer).to_bytes(4, "big")
    _from_local(daemon, conn, bytes(longer))
    assert len(conn.sent) == 2
    assert decode(conn.sent[1]).body == PingReply(clients=1)
    # A length field that does not match the frame is refused with an error.
    wrong = bytearray(ping + b"more")
    _from_local(daemon, conn, bytes(wrong))
    error = decode(conn.sent[2])
    assert isinstance(error.body, ErrorReply)
    assert error.body.code == ErrorCode.INVALID_MESSAGE
    assert error.request_id == 77
    # No reply without the REQUEST flag, and none to a stray reply.
    for flags in (Flag(0), Flag.REPLY, Flag.REQUEST | Flag.REPLY):
        _from_local(daemon, conn, encode(Message(body=PingRequest(),
                                                 dst=Address(0, Service.TRANSPORT),
                                                 flags=flags)))
    assert len(conn.sent) == 3


async def test_malformed_peer_frames_are_logged_and_ignored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    daemon, conn = _daemon_with_client(tmp_path, ECHO)
    plink = daemon.links[1]
    good = encode(Message(body=EchoRequest(b"x"), src=Address(1, 5), dst=Address(0, ECHO)))
    for offset, value in ((4, b"\x00"), (6, b"\x00\x10")):  # version 0; header length 16
        bad = bytearray(good)
        bad[offset : offset + len(value)] = value
        daemon._peer_frame(plink, bytes(bad))
    daemon._peer_frame(plink, good[:40])
    assert caplog.text.count("node 1: ignored a malformed frame") == 3
    forged = encode(Message(body=EchoRequest(b"x"), src=Address(2, 5), dst=Address(0, ECHO)))
    daemon._peer_frame(plink, forged)
    assert "claiming to come from node 2" in caplog.text
    assert conn.sent == []
    daemon._peer_frame(plink, good)
    assert conn.sent == [good]
