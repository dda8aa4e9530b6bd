"""A blocking transport client for short-lived tools (the ``ctdb`` command).

Same frames and registration as the asyncio client (both use ``ClientCore``), but
plain blocking sockets: importing asyncio costs the CLI ~50 ms it cannot afford (and
typing, at run time, ~2 ms).
"""

from __future__ import annotations

import socket
import time

from ctdb.errors import ProtocolError, RemoteError, RequestTimeout, TransportError
from ctdb.protocol import Address, ErrorReply, Flag, Message, Registered
from ctdb.transport.core import ClientCore, socket_path

TYPE_CHECKING = False  # typing is not imported at run time (the ctdb CLI's start-up)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

MAX_RECV = 128 * 1024
NO_FLAGS = Flag(0)


class SyncClient:
    """A registered address with blocking request/reply."""

    def __init__(self, run_dir: Path, timeout: float = 10.0) -> None:
        self._core = ClientCore()
        self._stash: dict[int, Message] = {}
        self.received_at: dict[int, float] = {}  # request id -> time.monotonic() of its reply
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        path = socket_path(run_dir)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            raise TransportError(f"cannot connect to the ctdb daemon ({path}): "
                                 f"{exc.strerror or exc}") from exc
        rid = self._core.request_id()
        for frame in self._core.register_frames(0, [], rid):
            self._sock.send(frame)
        reply = self._wait(rid, time.monotonic() + timeout, "transport")
        if not isinstance(reply.body, Registered):
            raise TransportError("transportd answered registration with the wrong message")
        self.address = Address(reply.body.node, reply.body.service)

    def send(self, dst: Address, body: Any, request_id: int = 0,
             flags: Flag = NO_FLAGS) -> None:
        for frame in self._core.frames(Message(body=body, dst=dst, request_id=request_id,
                                               flags=flags)):
            self._sock.send(frame)

    def request(self, dst: Address, body: Any, timeout: float = 10.0) -> Any:
        """Send a request, wait for its reply; ErrorReply raises RemoteError."""
        rid = self.send_request(dst, body)
        return self.wait_reply(rid, time.monotonic() + timeout, f"node {dst.node}")

    def send_request(self, dst: Address, body: Any) -> int:
        rid = self._core.request_id()
        self.send(dst, body, rid, Flag.REQUEST)
        return rid

    def wait_reply(self, rid: int, deadline: float, what: str) -> Any:
        body = self._wait(rid, deadline, what).body
        if isinstance(body, ErrorReply):
            raise RemoteError(body.code, body.message)
        return body

    def _wait(self, rid: int, deadline: float, what: str) -> Message:
        """Wait for the reply to *rid*, keeping other replies for their waiters."""
        if rid in self._stash:
            return self._stash.pop(rid)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RequestTimeout(f"timed out waiting for a reply from {what}")
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(MAX_RECV)
            except TimeoutError:
                continue
            except OSError as exc:
                raise TransportError(f"connection to the ctdb daemon failed: {exc}") from exc
            if not data:
                raise TransportError("the ctdb daemon closed the connection")
            try:
                msg = self._core.receive(data)
            except ProtocolError:
                continue
            if msg is None or not msg.flags & Flag.REPLY:
                continue
            self.received_at[msg.request_id] = time.monotonic()
            if msg.request_id == rid:
                return msg
            self._stash[msg.request_id] = msg

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
