"""The asyncio transport client (tclient) used by every daemon, and by tests.

A client registers an address with the local transportd, sends messages, matches
replies to requests by request id (with a deadline), and passes everything else to
its owner.  When transportd goes away the client reconnects with backoff and
registers again with its service and subscriptions, so a daemon's subscriptions
survive a transportd restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ctdb.errors import ProtocolError, RemoteError, RequestTimeout, TransportError
from ctdb.protocol import (
    NODE_ALL,
    Address,
    ErrorCode,
    ErrorReply,
    Flag,
    Message,
    Registered,
    Service,
    Subscribe,
    Unsubscribe,
    peek_header,
)
from ctdb.transport.core import TRANSPORT, ClientCore, socket_path
from ctdb.transport.seqpacket import Connection, make_socket

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
NO_FLAGS = Flag(0)


def _registered(body: Any) -> Registered:
    if isinstance(body, ErrorReply):
        raise RemoteError(body.code, body.message)
    if not isinstance(body, Registered):
        raise TransportError("transportd answered registration with the wrong message")
    return body


class Client:
    """One registered address on the node's transport."""

    def __init__(
        self,
        run_dir: Path,
        service: int = 0,
        *,
        subscriptions: Iterable[int] = (),
        on_message: Callable[[Message], None] | None = None,
        reconnect: bool = True,
    ) -> None:
        self.run_dir = run_dir
        self.fixed_service = service
        self.subscriptions = set(subscriptions)
        self.on_message = on_message
        self.reconnect = reconnect
        self.address = Address(0, 0)
        self._core = ClientCore()
        self._conn: Connection | None = None
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._connected = asyncio.Event()
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, run_dir: Path, service: int = 0, *,
                      subscriptions: Iterable[int] = (),
                      on_message: Callable[[Message], None] | None = None,
                      reconnect: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Client:
        client = cls(run_dir, service, subscriptions=subscriptions, on_message=on_message,
                     reconnect=reconnect)
        async with asyncio.timeout(timeout):
            await client._open()
        return client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def _open(self) -> None:
        sock = make_socket()
        try:
            await asyncio.get_running_loop().sock_connect(sock, str(socket_path(self.run_dir)))
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot reach transportd in {self.run_dir}: "
                                 f"{exc.strerror or exc}") from exc
        conn = self._conn = Connection(sock, self._frame, self._closed)
        try:
            rid = self._core.request_id()
            fut = self._expect(rid)
            for frame in self._core.register_frames(self.fixed_service,
                                                     sorted(self.subscriptions), rid):
                conn.send(frame)
            reply = _registered((await fut).body)
        except BaseException:
            # Forget this connection before closing it, so its close starts no reconnect.
            if self._conn is conn:
                self._conn = None
            conn.close()
            raise
        self.address = Address(reply.node, reply.service)
        self._connected.set()

    def _expect(self, rid: int) -> asyncio.Future[Message]:
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        return fut

    def _frame(self, _conn: Connection, data: bytes) -> None:
        try:
            msg = self._core.receive(data)
        except ProtocolError as exc:
            log.warning("ignored a malformed message: %s", exc)
            self._refuse(data, exc)
            return
        if msg is None:
            return
        if msg.flags & Flag.REPLY:
            fut = self._pending.pop(msg.request_id, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        if self.on_message is not None:
            self.on_message(msg)

    def _refuse(self, data: bytes, exc: ProtocolError) -> None:
        """Answer a malformed request with an error, so its sender need not time out."""
        try:
            hdr = peek_header(data)
        except ProtocolError:
            return
        if hdr.flags & Flag.REQUEST and not hdr.flags & Flag.REPLY and self._conn is not None:
            self.send(hdr.src, ErrorReply(int(ErrorCode.INVALID_MESSAGE),
                                          f"malformed message: {exc}"),
                      request_id=hdr.request_id, flags=Flag.REPLY)

    def _closed(self, conn: Connection) -> None:
        if conn is not self._conn:
            return  # a connection already given up on
        self._conn = None
        self._connected.clear()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(TransportError("connection to transportd lost"))
        self._pending.clear()
        running = self._reconnect_task is not None and not self._reconnect_task.done()
        if self.reconnect and not self._closing and not running:
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reopen())

    async def _reopen(self) -> None:
        delay = 0.02
        while not self._closing:
            try:
                await self._open()
            except (TransportError, RemoteError, OSError) as exc:
                log.debug("reconnect failed: %s", exc)
            else:
                log.info("reconnected to transportd as %s", self.address)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- sending -----------------------------------------------------------------
    def send(self, dst: Address, body: Any, *, request_id: int = 0, flags: Flag = NO_FLAGS,
             generation: int = 0) -> None:
        conn = self._conn
        if conn is None:
            raise TransportError("not connected to transportd")
        msg = Message(body=body, dst=dst, request_id=request_id, flags=flags,
                      generation=generation)
        for frame in self._core.frames(msg):
            conn.send(frame)

    async def request(self, dst: Address, body: Any, timeout: float = DEFAULT_TIMEOUT,
                      generation: int = 0) -> Any:
        """Send a request and return the reply's body; ErrorReply raises RemoteError."""
        rid = self._core.request_id()
        fut = self._expect(rid)
        try:
            self.send(dst, body, request_id=rid, flags=Flag.REQUEST, generation=generation)
            async with asyncio.timeout(timeout):
                reply = await fut
        except TimeoutError:
            raise RequestTimeout(
                f"no reply from node {dst.node:#x} service {dst.service} within {timeout:g}s"
            ) from None
        finally:
            self._pending.pop(rid, None)
        if isinstance(reply.body, ErrorReply):
            raise RemoteError(reply.body.code, reply.body.message)
        return reply.body

    def reply(self, to: Message, body: Any, generation: int = 0) -> None:
        if to.flags & Flag.REQUEST:
            self.send(to.src, body, request_id=to.request_id, flags=Flag.REPLY,
                      generation=generation)

    def publish(self, body: Any, node: int = NODE_ALL, generation: int = 0) -> None:
        """Broadcast to the subscribers of the body's message type on *node*."""
        self.send(Address(node, Service.SUBSCRIBERS), body, flags=Flag.BROADCAST,
                  generation=generation)

    async def subscribe(self, *types: int) -> None:
        self.subscriptions.update(types)
        await self.request(TRANSPORT, Subscribe(list(types)))

    async def unsubscribe(self, *types: int) -> None:
        self.subscriptions.difference_update(types)
        await self.request(TRANSPORT, Unsubscribe(list(types)))

    async def close(self) -> None:
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect_task
        if self._conn is not None:
            self._conn.close()
