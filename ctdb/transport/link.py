"""TCP links between transportd instances.

One link per pair of nodes: the node with the lower PNN dials, the other accepts, so
there is never a pair of duplicate links to resolve.  A link authenticates with the
cluster key (``auth``), then carries protocol frames each followed by its MAC.

Each connection is an ``asyncio.BufferedProtocol`` (``LinkStream``): the kernel reads
straight into one reused buffer, and every complete frame in it is verified and handed
on in that same callback, with no task switch, future or timer per frame.  One timer
per connection sends a keepalive frame when the link is idle and declares the peer
dead when nothing at all has arrived for keepalive_interval * keepalive_limit.

Writes are coalesced: while transportd handles a batch of input (``WriteBatch``), the
frames for a link are collected and leave in one write, one system call, when the
batch ends.  Once the socket pushes back, frames from different sources are queued per
source and sent round-robin, so a 16 MiB transfer (in 64 KiB fragments) never holds a
heartbeat behind it, while frames from one source keep their order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol, cast

from ctdb.logs import NOTICE
from ctdb.protocol import (
    FRAGMENT_SIZE,
    HEADER_SIZE,
    MAGIC,
    Ack,
    Address,
    Message,
    Service,
    encode,
)
from ctdb.transport.auth import (
    MAC_SIZE,
    PROOF_SIZE,
    AcceptorHandshake,
    AuthError,
    DialerHandshake,
    Session,
)

log = logging.getLogger(__name__)

HIGH_WATER = 256 * 1024  # buffered beyond this, frames wait in the per-source queues
LOW_WATER = HIGH_WATER // 4  # ...until the buffer is down to this
MAX_BACKLOG_BYTES = 512 * 1024 * 1024
HANDSHAKE_TIMEOUT = 5.0
# A SYN lost to a partition is retried by the kernel only after 1 s, 3 s, 7 s...;
# giving up sooner and dialing again reconnects soon after the network heals.
CONNECT_TIMEOUT = 0.5
MAX_FRAME = FRAGMENT_SIZE + 4096
# Room for two of the largest frames: once the complete frames are consumed and the
# rest is moved to the front, the next frame always fits.
RECV_BUFFER = 256 * 1024
# Until it authenticates, a connection gets only this much (handshakes are <= 4 KiB).
HANDSHAKE_BUFFER = 8 * 1024
_ROOM = MAX_FRAME + MAC_SIZE
_PREFIX = struct.Struct(">4s4xI")  # magic, (version, flags, header length), frame length
_now = time.monotonic


def tune_socket(sock: socket.socket | None, keepalive: float) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle = max(1, int(keepalive))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        # Unacknowledged data for this long means the peer is gone.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(keepalive * 4000))


class ByteReader(Protocol):
    """What the handshake reads from: a ``LinkStream`` or an ``asyncio.StreamReader``."""

    async def readexactly(self, n: int) -> bytes: ...


async def read_handshake(reader: ByteReader) -> bytes:
    size = int.from_bytes(await reader.readexactly(2), "big")
    if size > 4096:
        raise AuthError("handshake message too large")
    return await reader.readexactly(size)


def _unsigned(_frame: bytes) -> bytes:
    raise RuntimeError("the link has no session")


class WriteBatch:
    """Holds link writes back while one batch of input is handled.

    Between ``begin`` and the matching ``end``, frames sent on a link are collected;
    ``end`` writes each link's frames together, one system call for all of them (and one
    wake-up of the peer).  Outside a batch, ``PeerLink.send`` writes at once.
    """

    __slots__ = ("depth", "pending")

    def __init__(self) -> None:
        self.depth = 0
        self.pending: list[PeerLink] = []

    def begin(self) -> None:
        self.depth += 1

    def end(self) -> None:
        self.depth -= 1
        if not self.depth and self.pending:
            pending, self.pending = self.pending, []
            for plink in pending:
                try:
                    plink.flush()
                except Exception:
                    log.exception("node %d: failed to write frames", plink.pnn)


class PeerLink:
    """The link to one peer node: state, send queues and the connection in use."""

    def __init__(
        self,
        pnn: int,
        local_pnn: int,
        *,
        on_frame: Callable[[PeerLink, bytes], None],
        on_state: Callable[[PeerLink, bool], None],
        keepalive_interval: float,
        keepalive_limit: int,
        batch: WriteBatch | None = None,
    ) -> None:
        self.pnn = pnn
        self.local_pnn = local_pnn
        self.on_frame = on_frame
        self._on_state = on_state
        self.keepalive_interval = keepalive_interval
        self.keepalive_limit = keepalive_limit
        self.batch = batch if batch is not None else WriteBatch()
        self.connected = False
        self.since = time.time()
        self.version = 0
        self._stream: LinkStream | None = None
        self._sign: Callable[[bytes], bytes] = _unsigned
        # Frames waiting for the socket, per source, once it pushed back.
        self._queues: collections.OrderedDict[Hashable, collections.deque[bytes]] = (
            collections.OrderedDict()
        )
        self._pending_bytes = 0
        self._paused = False  # the transport's buffer is above HIGH_WATER
        # Frames of the current input batch, written when it ends.
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._last_sent = 0.0
        self.dropped_frames = 0
        self._keepalive = encode(
            Message(
                body=Ack(),
                src=Address(local_pnn, Service.TRANSPORT),
                dst=Address(pnn, Service.TRANSPORT),
            )
        )

    # -- sending -----------------------------------------------------------------
    def send(self, frame: bytes, source: Hashable) -> bool:
        """Queue a frame for the peer; False if the link is down."""
        stream = self._stream
        if stream is None or stream.dead or not self.connected:
            return False
        if self._paused or self._queues:
            return self._enqueue(frame, source)
        batch = self.batch
        if batch.depth:
            out = self._out
            if not out:
                batch.pending.append(self)
            out.append(frame)
            self._out_bytes += len(frame)
            if self._out_bytes >= HIGH_WATER:
                self.flush()
            return True
        self._write(stream, frame)
        return True

    def _enqueue(self, frame: bytes, source: Hashable) -> bool:
        if self._pending_bytes > MAX_BACKLOG_BYTES:
            log.warning("node %d: send backlog full, dropping a frame", self.pnn)
            return False
        queue = self._queues.get(source)
        if queue is None:
            queue = self._queues[source] = collections.deque()
        queue.append(frame)
        self._pending_bytes += len(frame)
        return True

    def _write(self, stream: LinkStream, frame: bytes) -> None:
        # Frames are signed as they are written: the MAC's implicit sequence number is
        # the order in which the peer receives them.
        stream.transport.write(frame + self._sign(frame))
        self._last_sent = _now()

    def flush(self) -> None:
        """Write the frames collected in the current batch, in one write."""
        out = self._out
        if not out:
            return
        self._out = []
        self._out_bytes = 0
        stream = self._stream
        if stream is None or stream.dead:
            return  # lost with the connection, as unsent frames always are
        if len(out) == 1:
            self._write(stream, out[0])
            return
        sign = self._sign
        stream.transport.write(b"".join([part for f in out for part in (f, sign(f))]))
        self._last_sent = _now()

    def writing_paused(self, stream: LinkStream) -> None:
        if stream is self._stream:
            self._paused = True

    def writing_resumed(self, stream: LinkStream) -> None:
        """The transport's buffer drained: send queued frames round-robin by source."""
        if stream is not self._stream or stream.dead:
            return
        self._paused = False
        queues = self._queues
        while queues and not self._paused:  # transport.write pauses us synchronously
            source, queue = next(iter(queues.items()))
            frame = queue.popleft()
            self._pending_bytes -= len(frame)
            if queue:
                queues.move_to_end(source)
            else:
                del queues[source]
            self._write(stream, frame)

    # -- liveness ----------------------------------------------------------------
    def _tick(self, stream: LinkStream) -> None:
        """Keepalive timer: send a keepalive when idle, give up on a silent peer."""
        if stream is not self._stream or stream.dead:
            return
        now = _now()
        interval = self.keepalive_interval
        limit = interval * self.keepalive_limit
        if now - stream.last_received >= limit:
            stream.fail(TimeoutError("no traffic within the keepalive limit"))
            return
        if now - self._last_sent >= interval * 0.9 and not self._paused and not self._queues:
            self._write(stream, self._keepalive)
        due = min(self._last_sent + interval, stream.last_received + limit) - _now()
        stream.timer = asyncio.get_running_loop().call_later(
            max(due, interval * 0.05), self._tick, stream)

    # -- connection lifecycle ----------------------------------------------------
    async def run_connection(self, stream: LinkStream, session: Session) -> None:
        """Serve an authenticated connection until it fails; replaces any older one."""
        old = self._stream
        if old is not None:
            old.close()
        self._stream, self.version = stream, session.version
        self._sign = session.signer.sign
        self._queues.clear()
        self._pending_bytes = 0
        self._out = []
        self._out_bytes = 0
        self._paused = False
        self._last_sent = _now()
        stream.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self._set_connected(True)
        # Not a TaskGroup, nor any task per connection: on Python 3.11.2 (Debian 12) a
        # failed child leaves the parent's cancel count raised, and the dialer's next
        # asyncio.timeout then raises CancelledError instead of TimeoutError, ending the
        # dialing for good.  The connection lives in callbacks; this only waits for its end.
        stream.timer = asyncio.get_running_loop().call_later(
            self.keepalive_interval, self._tick, stream)
        try:
            stream.start(self, session.verifier.verify)
            failed = await stream.closed
            if isinstance(failed, OSError | EOFError | TimeoutError
                          | asyncio.IncompleteReadError):
                log.warning("node %d: link lost: %s", self.pnn, _describe(failed))
            elif failed is not None:
                log.error("node %d: link failed: %r", self.pnn, failed)
        finally:
            if self._stream is stream:
                self._stream = None
                self._sign = _unsigned
                self._queues.clear()
                self._pending_bytes = 0
                self._out = []
                self._out_bytes = 0
                self._set_connected(False)
            stream.close()

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self.since = time.time()
            if connected:
                log.log(NOTICE, "node %d: connected", self.pnn)
            self._on_state(self, connected)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


class LinkStream(asyncio.BufferedProtocol):
    """One TCP connection of a link: the handshake's reads, then frames.

    During the handshake, ``readexactly`` serves the handshake code.  ``start`` turns
    it into a frame reader: each complete frame is verified and passed to the link's
    ``on_frame`` from ``buffer_updated``, inside one ``WriteBatch``.
    """

    transport: asyncio.Transport

    def __init__(self, on_connect: Callable[[LinkStream], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_connect = on_connect
        self._buf = bytearray(HANDSHAKE_BUFFER)
        self._view = memoryview(self._buf)
        self._start = 0  # unconsumed bytes are _buf[_start:_end]
        self._end = 0
        self._waiter: asyncio.Future[None] | None = None
        self._link: PeerLink | None = None
        self._verify: Callable[[bytes, bytes], bool] | None = None
        self._reading_paused = False
        self.dead = False
        # Resolves when the connection ends: with the reason, or None if closed here.
        self.closed: asyncio.Future[BaseException | None] = self._loop.create_future()
        self.last_received = _now()
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio callbacks --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self._on_connect is not None:
            self._on_connect(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        self.last_received = _now()
        if self._link is not None:
            self._frames()
            return
        # Still in the handshake: nothing consumes frames yet.
        if self._end == len(self._buf) and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._finish(EOFError("connection closed by peer"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc if exc is not None else EOFError("connection closed by peer"))
        if self.timer is not None:
            self.timer.cancel()

    def pause_writing(self) -> None:
        if self._link is not None:
            self._link.writing_paused(self)

    def resume_writing(self) -> None:
        if self._link is not None:
            self._link.writing_resumed(self)

    # -- handshake ----------------------------------------------------------------
    async def readexactly(self, n: int) -> bytes:
        if n > HANDSHAKE_BUFFER:
            raise ValueError(f"cannot read {n} bytes at once during the handshake")
        while self._end - self._start < n:
            if self.dead:
                partial = bytes(self._view[self._start : self._end])
                raise asyncio.IncompleteReadError(partial, n)
            if self._start:  # make room at the end
                rest = self._end - self._start
                self._buf[:rest] = self._buf[self._start : self._end]
                self._start, self._end = 0, rest
            if self._reading_paused and self._end < len(self._buf):
                self._reading_paused = False
                self.transport.resume_reading()
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        start = self._start
        self._start = start + n
        return bytes(self._view[start : start + n])

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- frames -------------------------------------------------------------------
    def start(self, link: PeerLink, verify: Callable[[bytes, bytes], bool]) -> None:
        """Hand every frame from now on (and any already buffered) to *link*."""
        self._link = link
        self._verify = verify
        rest = self._end - self._start
        buf = bytearray(RECV_BUFFER)
        buf[:rest] = self._view[self._start : self._end]
        self._buf, self._view = buf, memoryview(buf)
        self._start, self._end = 0, rest
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        if not self.dead:
            self._frames()

    def _frames(self) -> None:
        link = self._link
        verify = self._verify
        if link is None or verify is None or self.dead:
            return
        buf, view = self._buf, self._view
        start, end = self._start, self._end
        on_frame = link.on_frame
        batch = link.batch
        batch.begin()
        try:
            while end - start >= HEADER_SIZE:
                magic, length = _PREFIX.unpack_from(buf, start)
                if magic != MAGIC:
                    self.fail(ConnectionError("stream out of sync (bad magic)"))
                    return
                if length < HEADER_SIZE or length > MAX_FRAME:
                    self.fail(ConnectionError(f"stream out of sync (frame length {length})"))
                    return
                stop = start + length
                if stop + MAC_SIZE > end:
                    break
                frame = bytes(view[start:stop])
                start = stop + MAC_SIZE
                if not verify(frame, bytes(view[stop:start])):
                    link.dropped_frames += 1
                    log.warning(
                        "node %d: dropped a frame that failed authentication (forged or replayed)",
                        link.pnn,
                    )
                    continue
                try:
                    on_frame(link, frame)
                except Exception:
                    log.exception("node %d: failed to handle a frame", link.pnn)
                if self.dead:
                    return
        finally:
            batch.end()
        if start == end:
            self._start = self._end = 0
        elif len(buf) - end < _ROOM:
            # Move the partial frame to the front, so that the whole of it fits.
            rest = end - start
            buf[:rest] = buf[start:end]
            self._start, self._end = 0, rest
        else:
            self._start = start

    # -- ending -------------------------------------------------------------------
    def _finish(self, reason: BaseException | None) -> None:
        if not self.dead:
            self.dead = True
            if not self.closed.done():
                self.closed.set_result(reason)
        self._wake()

    def fail(self, reason: BaseException) -> None:
        """End the connection for *reason* (logged by the link)."""
        self._finish(reason)
        self.transport.close()

    def close(self) -> None:
        self._finish(None)
        if self.timer is not None:
            self.timer.cancel()
        self.transport.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError | EOFError):
        return "connection closed by peer"
    if isinstance(exc, TimeoutError):
        return "no traffic within the keepalive limit"
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class LinkParams:
    """What both ends of every link of this node use."""

    keys: list[bytes]
    local_pnn: int
    versions: tuple[int, int]
    keepalive: float


async def dial(link: PeerLink, host: str, port: int, local_host: str,
               params: LinkParams) -> None:
    """Connect to a peer and serve the link until it fails (one attempt)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(CONNECT_TIMEOUT):
        _, stream = await loop.create_connection(LinkStream, host, port,
                                                 local_addr=(local_host, 0))
    try:
        tune_socket(stream.transport.get_extra_info("socket"), params.keepalive)
        hs = DialerHandshake(params.keys, params.local_pnn, params.versions)
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            stream.write(hs.first_message())
            body = await read_handshake(stream)
            proof, session = hs.on_reply(body, link.pnn)
            stream.write(proof)
    except BaseException:
        stream.close()
        raise
    await link.run_connection(stream, session)


async def accept(stream: LinkStream, params: LinkParams,
                 allowed: Callable[[str, int], PeerLink]) -> None:
    """Authenticate an incoming connection and hand it to its link.

    *allowed* maps (source address, claimed PNN) to the link, or raises AuthError.
    """
    peer = stream.transport.get_extra_info("peername")
    host = str(peer[0]) if peer else "?"
    try:
        tune_socket(stream.transport.get_extra_info("socket"), params.keepalive)
        hs = AcceptorHandshake(params.keys, params.local_pnn, params.versions)
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            hello, reply = hs.on_hello(await read_handshake(stream))
            link = allowed(host, hello.pnn)
            stream.write(reply)
            session = hs.on_proof(await stream.readexactly(PROOF_SIZE))
    except (AuthError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        log.warning("refused connection from %s: %s", host, _describe(exc))
        stream.close()
        return
    except BaseException:
        stream.close()
        raise
    await link.run_connection(stream, session)


async def listen(host: str | None, port: int, params: LinkParams,
                 allowed: Callable[[str, int], PeerLink]) -> asyncio.Server:
    """Accept links from peers on *host*:*port* (see ``accept``)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("serving an incoming link failed: %r", task.exception())

    def connected(stream: LinkStream) -> None:
        task = loop.create_task(accept(stream, params, allowed))
        tasks.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(done)

    return await loop.create_server(lambda: LinkStream(connected), host, port,
                                    reuse_address=True)
