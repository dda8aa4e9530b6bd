"""Whole frames: a header plus one registered payload, or an opaque unknown one."""

from __future__ import annotations

from ctdb.errors import ProtocolError
from ctdb.protocol.codec import DECODERS, ENCODERS, MESSAGE_TYPES, as_buffer, decoder
from ctdb.protocol.header import (
    FLAGS,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_MESSAGE,
    MIN_VERSION,
    NODE_CURRENT,
    VERSION,
    Address,
    Flag,
    check_prefix,
)
from ctdb.record import frozen

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import Any

    from ctdb.protocol.fields import Buffer

_LOCAL = Address(NODE_CURRENT, 0)
_NO_FLAGS = Flag(0)


@frozen
class UnknownBody:
    """A payload of a type this version does not know (a newer peer's), kept verbatim.

    Encoding it reproduces the original payload, so routers can forward it.
    """

    msg_type: int
    payload: bytes


@frozen
class Message:
    """One decoded frame: routing fields plus the payload object.

    ``body`` is typed ``Any`` because handlers are dispatched on its class, so each one
    already knows what it holds.
    """

    body: Any
    src: Address = _LOCAL
    dst: Address = _LOCAL
    request_id: int = 0
    generation: int = 0
    flags: Flag = _NO_FLAGS

    @property
    def msg_type(self) -> int:
        """The wire type number of ``body``."""
        body = self.body
        if type(body) is UnknownBody:
            return body.msg_type
        entry = ENCODERS.get(type(body))
        if entry is None:
            raise ProtocolError(f"{type(body).__name__} is not a registered message")
        return entry[0]


def encode(msg: Message) -> bytes:
    """One complete frame; it may exceed FRAGMENT_SIZE (see ``fragment``)."""
    try:
        return _encode(msg)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"cannot encode {type(msg.body).__name__}: {exc!r}") from exc


def _encode(msg: Message) -> bytes:
    body = msg.body
    entry = ENCODERS.get(type(body))
    out = [b""]  # the header goes first, once the length is known
    if entry is not None:
        mtype = entry[0]
        entry[1](body, out)
    elif type(body) is UnknownBody:
        mtype = body.msg_type
        out.append(bytes(body.payload))
    else:
        raise ProtocolError(f"{type(body).__name__} is not a registered message")
    length = HEADER_SIZE + sum(map(len, out))
    if length > MAX_MESSAGE:
        raise ProtocolError(f"message of {length} bytes exceeds {MAX_MESSAGE}")
    src, dst = msg.src, msg.dst
    out[0] = HEADER.pack(
        MAGIC, VERSION, msg.flags, HEADER_SIZE, length, mtype, 0,
        src[0], src[1], dst[0], dst[1], msg.request_id, msg.generation,
    )  # fmt: skip
    return b"".join(out)


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Decode one complete frame; any defect raises ProtocolError and nothing else."""
    try:
        if type(data) is bytes:
            return _decode(data)
        with memoryview(data) as view:  # released on exit: errors do not pin the caller's buffer
            return _decode(as_buffer(view))
    except ProtocolError:
        raise
    except Exception as exc:  # the contract: callers catch ProtocolError alone
        raise ProtocolError(f"invalid frame: {exc!r}") from exc


def _decode(buf: Buffer) -> Message:
    end = len(buf)
    if end < HEADER_SIZE:
        raise ProtocolError(f"frame of {end} bytes is shorter than the header")
    magic, ver, flags, hlen, length, mtype, _, sn, ss, dn, ds, rid, gen = HEADER.unpack_from(buf)
    if magic != MAGIC or ver < MIN_VERSION or not HEADER_SIZE <= hlen <= length <= MAX_MESSAGE:
        check_prefix(magic, ver, hlen, length)
    if length != end:
        raise ProtocolError(f"length field says {length} bytes, frame has {end}")
    dec = DECODERS.get(mtype) or decoder(mtype)  # compiled on first use
    if dec is None:
        body: Any = UnknownBody(mtype, bytes(buf[hlen:]))
    else:
        try:
            body = dec(buf, hlen, end)
        except ProtocolError as exc:
            raise ProtocolError(f"{MESSAGE_TYPES[mtype].__name__}: {exc}") from exc
    return Message(body, Address(sn, ss), Address(dn, ds), rid, gen, FLAGS[flags])
