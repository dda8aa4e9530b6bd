"""Splitting large frames into FRAGMENT frames and joining them again.

Links send frames from different sources interleaved, so a bulk transfer is cut into
FRAGMENT_SIZE pieces and never holds a heartbeat behind it.  Pieces of one message
keep their order on a link, which is why reassembly only accepts them in order.
"""

from __future__ import annotations

import struct

from ctdb.errors import ProtocolError
from ctdb.protocol.header import (
    FRAGMENT_SIZE,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_MESSAGE,
    Address,
    Header,
    peek_header,
    set_dst,
    set_src,
)
from ctdb.protocol.messages import FRAGMENT

# The header followed by Fragment's fields: msg_id, total, offset, data length.
_FRAG_HEAD = struct.Struct(HEADER.format + "IIII")
_FRAG_FIELDS = struct.Struct(">IIII")
OVERHEAD = _FRAG_HEAD.size


def fragment(frame: bytes, msg_id: int, size: int = FRAGMENT_SIZE) -> list[bytes]:
    """``[frame]`` if it fits in ``size`` bytes, else FRAGMENT frames of at most ``size``.

    Each piece copies the original's version, flags, addresses, request id and
    generation, so routers treat the pieces exactly like the whole.
    """
    if len(frame) <= size:
        return [frame]
    try:
        return _split(frame, msg_id, size)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"cannot fragment frame: {exc!r}") from exc


def _split(frame: bytes, msg_id: int, size: int) -> list[bytes]:
    if size <= OVERHEAD:
        raise ProtocolError(f"fragment size {size} leaves no room for data")
    if not 0 <= msg_id <= 0xFFFFFFFF:
        raise ProtocolError(f"fragment msg_id {msg_id} does not fit in 32 bits")
    head = peek_header(frame)
    total = len(frame)
    if head.length != total:
        raise ProtocolError(f"length field says {head.length} bytes, frame has {total}")
    chunk, src, dst = size - OVERHEAD, head.src, head.dst
    out = []
    with memoryview(frame) as view:
        for offset in range(0, total, chunk):
            n = min(chunk, total - offset)
            out.append(
                _FRAG_HEAD.pack(
                    MAGIC, head.version, head.flags, HEADER_SIZE, OVERHEAD + n,
                    FRAGMENT, head.msg_type,
                    src[0], src[1], dst[0], dst[1], head.request_id, head.generation,
                    msg_id, total, offset, n,
                )
                + view[offset : offset + n]
            )  # fmt: skip
    return out


class Reassembler:
    """Joins FRAGMENT frames per (source node, source service, msg_id).

    Memory is bounded by ``max_pending`` partial messages of at most MAX_MESSAGE each;
    a new one beyond that drops the partial that has waited longest for its next piece
    (that sender's later pieces then fail as out of order).
    """

    def __init__(self, max_pending: int = 64) -> None:
        self.max_pending = max_pending
        self._pending: dict[tuple[int, int, int], tuple[int, bytearray]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def feed(self, frame: bytes) -> bytes | None:
        """A complete frame (non-fragments pass through unchanged), or None for now."""
        try:
            return self._feed(frame)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"invalid fragment: {exc!r}") from exc

    def discard(self, src: Address) -> None:
        """Forget partial messages from ``src`` (its connection is gone)."""
        for key in [k for k in self._pending if (k[0], k[1]) == (src[0], src[1])]:
            del self._pending[key]

    def _feed(self, frame: bytes) -> bytes | None:
        head = peek_header(frame)
        if head.msg_type != FRAGMENT:
            return frame
        if head.length != len(frame):
            raise ProtocolError(f"length field says {head.length} bytes, frame has {len(frame)}")
        start = head.header_length + _FRAG_FIELDS.size
        if start > len(frame):
            raise ProtocolError("fragment frame too short for its fields")
        msg_id, total, offset, size = _FRAG_FIELDS.unpack_from(frame, head.header_length)
        if start + size > len(frame):
            raise ProtocolError(f"fragment data of {size} bytes overruns the frame")
        data = frame[start : start + size]
        key = (head.src.node, head.src.service, msg_id)
        partial = self._pending.pop(key, None)  # re-inserted below unless it fails
        received = 0 if partial is None else len(partial[1])
        if partial is not None and partial[0] != total:
            raise ProtocolError(f"fragment total changed from {partial[0]} to {total}")
        if offset != received:
            raise ProtocolError(f"fragment at offset {offset}, expected {received}")
        if not HEADER_SIZE <= total <= MAX_MESSAGE or offset + size > total:
            raise ProtocolError(f"fragment of {size} at {offset} does not fit total {total}")
        if partial is None:
            if size >= HEADER_SIZE and peek_header(data).length != total:
                raise ProtocolError("first fragment's header disagrees with the total")
            partial = (total, bytearray())
            while len(self._pending) >= max(self.max_pending, 1):
                del self._pending[next(iter(self._pending))]
        partial[1].extend(data)
        if len(partial[1]) < total:
            self._pending[key] = partial
            return None
        return _finish(partial[1], head)


def _finish(buf: bytearray, outer: Header) -> bytes:
    """Validate the joined frame and give it the routing addresses of its pieces."""
    inner = peek_header(buf)
    if inner.length != len(buf):
        raise ProtocolError("reassembled frame's length field disagrees with its size")
    if inner.msg_type == FRAGMENT:
        raise ProtocolError("a fragment may not contain another fragment")
    # Routers may have rewritten the pieces' addresses (set_src/set_dst); keep that.
    set_src(buf, outer.src)
    set_dst(buf, outer.dst)
    return bytes(buf)
