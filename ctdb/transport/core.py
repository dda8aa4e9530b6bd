"""The sans-IO part of a transport client, shared by the async and blocking shells.

It turns messages into frames (encode, then fragment) and frames back into messages
(reassemble, then decode), and hands out request ids.
"""

from __future__ import annotations

from ctdb.protocol import (
    NODE_CURRENT,
    Address,
    Flag,
    Message,
    Reassembler,
    Register,
    Service,
    decode,
    encode,
    fragment,
)

TYPE_CHECKING = False  # typing is not imported at run time (the ctdb CLI's start-up)
if TYPE_CHECKING:
    from pathlib import Path

TRANSPORT = Address(NODE_CURRENT, Service.TRANSPORT)
SOCKET_NAME = "transport.sock"


def socket_path(run_dir: Path) -> Path:
    """The node's transport socket (``ctdbd.socket`` stays free for smbd's protocol)."""
    return run_dir / SOCKET_NAME


class ClientCore:
    """Frame codec state of one client connection."""

    def __init__(self) -> None:
        self._next_request = 0
        self._next_msg = 0
        self._reassembler = Reassembler()

    def request_id(self) -> int:
        self._next_request = (self._next_request + 1) & 0xFFFFFFFFFFFFFFFF or 1
        return self._next_request

    def frames(self, msg: Message) -> list[bytes]:
        self._next_msg = (self._next_msg + 1) & 0xFFFFFFFF
        return fragment(encode(msg), self._next_msg)

    def receive(self, frame: bytes) -> Message | None:
        """A whole message, or None while a fragmented one is incomplete.

        Raises ProtocolError for a malformed frame.
        """
        whole = self._reassembler.feed(frame)
        return None if whole is None else decode(whole)

    def register_frames(self, service: int, subscriptions: list[int], rid: int) -> list[bytes]:
        msg = Message(body=Register(service, subscriptions), dst=TRANSPORT,
                      request_id=rid, flags=Flag.REQUEST)
        return self.frames(msg)
