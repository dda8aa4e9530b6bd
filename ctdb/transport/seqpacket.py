"""Unix seqpacket sockets on an asyncio loop.

SOCK_SEQPACKET keeps message boundaries like datagrams but is connection-oriented:
the kernel applies back-pressure per connection and a dead peer is seen at once
(EOF), which is what the transport needs for clients that crash.  asyncio's stream
helpers refuse non-stream sockets, so this is a small reader/writer of our own: the
read callback drains every queued message in one go (``recv_into`` one receive buffer
per thread, reused), writes go straight to the socket and queue only when the kernel
pushes back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MAX_RECV = 128 * 1024
SOCKET_BUFFER = 4 * 1024 * 1024
MAX_BACKLOG_BYTES = 256 * 1024 * 1024
_BATCH = 256
_local = threading.local()


def _receive_buffer() -> bytearray:
    """This thread's receive buffer: ``recv_into`` it beats allocating MAX_RECV per recv.

    One per thread, because ``recv_into`` runs without the GIL; the loop's callbacks
    never nest, so the connections of one thread can share it.
    """
    buf: bytearray | None = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(MAX_RECV)
    return buf


class Batch(Protocol):
    """Brackets the handling of the messages one read callback drains (``WriteBatch``)."""

    def begin(self) -> None: ...

    def end(self) -> None: ...


def make_socket() -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setblocking(False)
    return sock


def listen(path: Path) -> socket.socket:
    """A root-only listening socket at *path*, replacing a stale one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    sock = make_socket()
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class Connection:
    """One seqpacket connection: callbacks for messages and close, buffered send.

    *on_message* gets each message as ``bytes``.  *batch*, if given, is begun before
    and ended after each run of messages drained at once.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[Connection, bytes], None],
        on_close: Callable[[Connection], None],
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        batch: Batch | None = None,
    ) -> None:
        self._setup(sock, on_message, on_close, loop, batch, borrow=False)

    def _setup(
        self,
        sock: socket.socket,
        on_message: Callable[[Connection, Any], None],
        on_close: Callable[[Connection], None],
        loop: asyncio.AbstractEventLoop | None,
        batch: Batch | None,
        *,
        borrow: bool,
    ) -> None:
        self.sock = sock
        self._loop = loop or asyncio.get_running_loop()
        self._on_message = on_message
        self._on_close = on_close
        self._batch = batch
        self._borrow = borrow
        self._buf = _receive_buffer()
        self._view = memoryview(self._buf)
        self._backlog: collections.deque[bytes] = collections.deque()
        self._backlog_bytes = 0
        self._writing = False
        self.closed = False
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        recv_into = self.sock.recv_into
        buf, view = self._buf, self._view
        on_message = self._on_message
        borrow = self._borrow
        batch = self._batch
        if batch is not None:
            batch.begin()
        try:
            for _ in range(_BATCH):
                try:
                    size = recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    log.debug("receive failed: %s", exc)
                    self.close()
                    return
                if not size:
                    self.close()
                    return
                try:
                    on_message(self, view[:size] if borrow else bytes(view[:size]))
                except Exception:
                    # A bug handling one message must not take the connection down.
                    log.exception("failed to handle a message")
                if self.closed:
                    return
        finally:
            if batch is not None:
                batch.end()

    def send(self, data: bytes) -> None:
        """Send one message; queue it if the kernel pushes back."""
        if self.closed:
            return
        if not self._backlog:
            try:
                self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                log.debug("send failed: %s", exc)
                self.close()
                return
            else:
                return
        self._backlog.append(data)
        self._backlog_bytes += len(data)
        if self._backlog_bytes > MAX_BACKLOG_BYTES:
            log.warning("peer does not read its messages; closing its connection")
            self.close()
            return
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        while self._backlog:
            data = self._backlog[0]
            try:
                self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("send failed: %s", exc)
                self.close()
                return
            self._backlog.popleft()
            self._backlog_bytes -= len(data)
        self._writing = False
        self._loop.remove_writer(self._fd)

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._fd)
        if self._writing:
            self._loop.remove_writer(self._fd)
        self._backlog.clear()
        self.sock.close()
        self._on_close(self)


class BorrowingConnection(Connection):
    """A connection whose callback borrows the receive buffer, to save a copy.

    *on_message* gets a writable memoryview of the message, valid only until it
    returns: the next message is received into the same memory.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[Connection, memoryview], None],
        on_close: Callable[[Connection], None],
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        batch: Batch | None = None,
    ) -> None:
        self._setup(sock, on_message, on_close, loop, batch, borrow=True)
