"""TCP links between transportd instances.

One link per pair of nodes: the node with the lower PNN dials, the other accepts, so
there is never a pair of duplicate links to resolve.  A link authenticates with the
cluster key (``auth``), then carries protocol frames each followed by its MAC.

Frames from different sources are queued per source and sent round-robin once the
socket pushes back, so a 16 MiB transfer (in 64 KiB fragments) never holds a
heartbeat behind it, while frames from one source keep their order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

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

HIGH_WATER = 256 * 1024
MAX_BACKLOG_BYTES = 512 * 1024 * 1024
HANDSHAKE_TIMEOUT = 5.0
# A SYN lost to a partition is retried by the kernel only after 1 s, 3 s, 7 s...;
# giving up sooner and dialing again reconnects soon after the network heals.
CONNECT_TIMEOUT = 0.5
MAX_FRAME = FRAGMENT_SIZE + 4096


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


async def read_handshake(reader: asyncio.StreamReader) -> bytes:
    size = int.from_bytes(await reader.readexactly(2), "big")
    if size > 4096:
        raise AuthError("handshake message too large")
    return await reader.readexactly(size)


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
    ) -> None:
        self.pnn = pnn
        self.local_pnn = local_pnn
        self._on_frame = on_frame
        self._on_state = on_state
        self.keepalive_interval = keepalive_interval
        self.keepalive_limit = keepalive_limit
        self.connected = False
        self.since = time.time()
        self.version = 0
        self._writer: asyncio.StreamWriter | None = None
        self._session: Session | None = None
        self._queues: collections.OrderedDict[Hashable, collections.deque[bytes]] = (
            collections.OrderedDict()
        )
        self._pending_bytes = 0
        self._wake = asyncio.Event()
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
        writer, session = self._writer, self._session
        if not self.connected or writer is None or session is None:
            return False
        if not self._pending_bytes and writer.transport.get_write_buffer_size() < HIGH_WATER:
            writer.write(frame + session.signer.sign(frame))
            self._last_sent = time.monotonic()
            return True
        if self._pending_bytes > MAX_BACKLOG_BYTES:
            log.warning("node %d: send backlog full, dropping a frame", self.pnn)
            return False
        queue = self._queues.get(source)
        if queue is None:
            queue = self._queues[source] = collections.deque()
        queue.append(frame)
        self._pending_bytes += len(frame)
        self._wake.set()
        return True

    async def _writer_loop(self, writer: asyncio.StreamWriter, session: Session) -> None:
        interval = self.keepalive_interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            while self._queues:
                # Round-robin: one frame from each source in turn.
                source, queue = next(iter(self._queues.items()))
                frame = queue.popleft()
                self._pending_bytes -= len(frame)
                if queue:
                    self._queues.move_to_end(source)
                else:
                    del self._queues[source]
                writer.write(frame + session.signer.sign(frame))
                self._last_sent = time.monotonic()
                if writer.transport.get_write_buffer_size() >= HIGH_WATER:
                    await writer.drain()
            if time.monotonic() - self._last_sent >= interval * 0.9:
                frame = self._keepalive
                writer.write(frame + session.signer.sign(frame))
                self._last_sent = time.monotonic()
            await writer.drain()

    # -- receiving ---------------------------------------------------------------
    async def _reader_loop(self, reader: asyncio.StreamReader, session: Session) -> None:
        deadline = self.keepalive_interval * self.keepalive_limit
        verifier = session.verifier
        while True:
            async with asyncio.timeout(deadline):
                header = await reader.readexactly(HEADER_SIZE)
                if header[:4] != MAGIC:
                    raise ConnectionError("stream out of sync (bad magic)")
                length = int.from_bytes(header[8:12], "big")
                if length < HEADER_SIZE or length > MAX_FRAME:
                    raise ConnectionError(f"stream out of sync (frame length {length})")
                rest = await reader.readexactly(length - HEADER_SIZE + MAC_SIZE)
            frame = header + rest[:-MAC_SIZE]
            if not verifier.verify(frame, rest[-MAC_SIZE:]):
                self.dropped_frames += 1
                log.warning(
                    "node %d: dropped a frame that failed authentication (forged or replayed)",
                    self.pnn,
                )
                continue
            try:
                self._on_frame(self, frame)
            except Exception:
                log.exception("node %d: failed to handle a frame", self.pnn)

    # -- connection lifecycle ----------------------------------------------------
    async def run_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session
    ) -> None:
        """Serve an authenticated connection until it fails; replaces any older one."""
        old = self._writer
        if old is not None:
            old.close()
        self._writer, self._session, self.version = writer, session, session.version
        self._queues.clear()
        self._pending_bytes = 0
        writer.transport.set_write_buffer_limits(high=HIGH_WATER * 4)
        self._set_connected(True)
        # Not a TaskGroup: on Python 3.11.2 (Debian 12) a failed child leaves the parent's
        # cancel count raised, and the dialer's next asyncio.timeout then raises
        # CancelledError instead of TimeoutError, ending the dialing for good.
        tasks = [asyncio.ensure_future(self._reader_loop(reader, session)),
                 asyncio.ensure_future(self._writer_loop(writer, session))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            failed = next((t.exception() for t in done if t.exception() is not None), None)
            if isinstance(failed, OSError | EOFError | TimeoutError
                          | asyncio.IncompleteReadError):
                log.warning("node %d: link lost: %s", self.pnn, _describe(failed))
            elif failed is not None:
                log.error("node %d: link failed: %r", self.pnn, failed)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._writer is writer:
                self._writer = None
                self._session = None
                self._set_connected(False)
            writer.close()

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self.since = time.time()
            if connected:
                log.log(NOTICE, "node %d: connected", self.pnn)
            self._on_state(self, connected)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


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
    async with asyncio.timeout(CONNECT_TIMEOUT):
        reader, writer = await asyncio.open_connection(host, port, local_addr=(local_host, 0))
    try:
        tune_socket(writer.get_extra_info("socket"), params.keepalive)
        hs = DialerHandshake(params.keys, params.local_pnn, params.versions)
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            writer.write(hs.first_message())
            body = await read_handshake(reader)
            proof, session = hs.on_reply(body, link.pnn)
            writer.write(proof)
            await writer.drain()
    except BaseException:
        writer.close()
        raise
    await link.run_connection(reader, writer, session)


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 params: LinkParams, allowed: Callable[[str, int], PeerLink]) -> None:
    """Authenticate an incoming connection and hand it to its link.

    *allowed* maps (source address, claimed PNN) to the link, or raises AuthError.
    """
    peer = writer.get_extra_info("peername")
    host = str(peer[0]) if peer else "?"
    try:
        tune_socket(writer.get_extra_info("socket"), params.keepalive)
        hs = AcceptorHandshake(params.keys, params.local_pnn, params.versions)
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            hello, reply = hs.on_hello(await read_handshake(reader))
            link = allowed(host, hello.pnn)
            writer.write(reply)
            session = hs.on_proof(await reader.readexactly(PROOF_SIZE))
    except (AuthError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        log.warning("refused connection from %s: %s", host, _describe(exc))
        writer.close()
        return
    await link.run_connection(reader, writer, session)
